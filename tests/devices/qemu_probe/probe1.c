#include "probe.h"
void kmain(u32 magic, u32 mbi){
  kv("magic",magic,8);
  /* PIC init so we can look at IRR */
  outb(0x20,0x11);outb(0x21,0x20);outb(0x21,4);outb(0x21,1);outb(0xA0,0x11);outb(0xA1,0x28);outb(0xA1,2);outb(0xA1,1);outb(0x21,0xff);outb(0xA1,0xff);
  int fns[4][2]={{0,0},{1,0},{1,1},{1,3}};
  for(int k=0;k<4;k++){int d=fns[k][0],f=fns[k][1];puts("cfg ");hex(d,2);putc('.');hex(f,1);putc(':');for(int r=0;r<256;r+=4){putc(' ');hex(cfgl(d,f,r),8);}putc('\n');}
  kv("absent 00:02.0",cfgl(2,0,0),8); kv("absent 00:01.2",cfgl(1,2,0),8); kv("bus1",cfgl(0x20,0,0) ,8);
  outl(0xCF8,0x80000000|(1<<16)); kv("bus1dev0",inl(0xCFC),8);
  outl(0xCF8,0x00000000|(1<<11)|(1<<8)); kv("disabled read",inl(0xCFC),8); kv("cf8 read",inl(0xCF8),8); kv("cf8 byte",inb(0xCF8),2);kv("cf9 byte",inb(0xCF9),2); kv("cfa word",inw(0xCFA),4);
  kv("ide word 0x0a",cfgw(1,1,0x0a),4); kv("ide byte 0x09",cfgb(1,1,0x09),2); kv("ide byte 0x0b",cfgb(1,1,0x0b),2); kv("ide word 0x02",cfgw(1,1,0x02),4);
  /* BAR sizing */
  for(int r=0x10;r<=0x24;r+=4){u32 o=cfgl(1,1,r);cfgwl(1,1,r,0xffffffff);puts("bar ");hex(r,2);puts(" size=");hex(cfgl(1,1,r),8);cfgwl(1,1,r,o);puts(" restored=");hex(cfgl(1,1,r),8);putc('\n');}
  {u32 o=cfgl(0,0,0x10);cfgwl(0,0,0x10,0xffffffff);kv("hostbar0 size",cfgl(0,0,0x10),8);cfgwl(0,0,0x10,o);}
  {u32 o=cfgl(1,3,0x10);cfgwl(1,3,0x10,0xffffffff);kv("acpi bar0 size",cfgl(1,3,0x10),8);cfgwl(1,3,0x10,o);}
  /* write masks on IDE */
  {u16 o=cfgw(1,1,4);cfgww(1,1,4,0xffff);kv("ide cmd wmask",cfgw(1,1,4),4);cfgww(1,1,4,o);kv("ide cmd restored",cfgw(1,1,4),4);}
  {u16 o=cfgw(1,1,6);cfgww(1,1,6,0xffff);kv("ide status after w1",cfgw(1,1,6),4);}
  {u32 o=cfgl(1,1,0x0c);cfgwl(1,1,0x0c,0xffffffff);kv("ide 0c wmask",cfgl(1,1,0x0c),8);cfgwl(1,1,0x0c,o);}
  {u32 o=cfgl(1,1,0x3c);cfgwl(1,1,0x3c,0xffffffff);kv("ide 3c wmask",cfgl(1,1,0x3c),8);cfgwl(1,1,0x3c,o);}
  {u32 o=cfgl(1,1,0x00);cfgwl(1,1,0x00,0xffffffff);kv("ide 00 wmask",cfgl(1,1,0x00),8);}
  {u32 o=cfgl(1,1,0x08);cfgwl(1,1,0x08,0xffffffff);kv("ide 08 wmask",cfgl(1,1,0x08),8);}
  {u32 o=cfgl(1,1,0x2c);cfgwl(1,1,0x2c,0xffffffff);kv("ide 2c wmask",cfgl(1,1,0x2c),8);}
  {u32 o=cfgl(1,1,0x40);cfgwl(1,1,0x40,0xffffffff);kv("ide 40 wmask",cfgl(1,1,0x40),8);cfgwl(1,1,0x40,o);}
  {u32 o=cfgl(1,1,0xfc);cfgwl(1,1,0xfc,0xffffffff);kv("ide fc wmask",cfgl(1,1,0xfc),8);cfgwl(1,1,0xfc,o);}
  outl(0xCF8,cfgaddr(1,1,0)); kv("dword at cfe (off fe)",0,1); outl(0xCF8,cfgaddr(1,1,0xfc)); kv("inl cfe", inw(0xCFE),4);
  outl(0xCF8,cfgaddr(1,1,0)|2); kv("cf8 lowbits read cfc", inl(0xCFC),8); kv("cf8 with lowbits",inl(0xCF8),8);
  bm = cfgl(1,1,0x20)&0xfff0; kv("bm",bm,4);
  /* BAR4 move */
  cfgwl(1,1,0x20,0xd001); kv("bm moved readback",cfgl(1,1,0x20),8); kv("old bmic",inb(bm),2); kv("new bmis",inb(0xd002),2); cfgwl(1,1,0x20,bm|1);
  kv("bmic b",inb(bm),2);kv("bmic w",inw(bm),4);kv("bmic l",inl(bm),8);kv("bm+1",inb(bm+1),2);kv("bmis",inb(bm+2),2);kv("bm+3",inb(bm+3),2);kv("bmis w",inw(bm+2),4);kv("bmidtp",inl(bm+4),8);
  kv("bm sec bmis",inb(bm+10),2);
  outl(bm+4,0x12345677); kv("bmidtp w/ 77",inl(bm+4),8); kv("bmidtp byte5",inb(bm+5),2); outw(bm+6,0xabcd); kv("bmidtp w6",inl(bm+4),8); outl(bm+4,0);
  outb(bm+2,0xff); kv("bmis after ff",inb(bm+2),2); outb(bm+2,0x00); kv("bmis after 00",inb(bm+2),2); outw(bm+2,0x60); kv("bmis after word 60",inb(bm+2),2);
  outb(bm,0xff); kv("bmic after ff",inb(bm),2); kv("bmis after start",inb(bm+2),2); outb(bm,0); kv("bmis after stop",inb(bm+2),2);
  /* ATA */
  dump_ata("initial pri",0x1F0); 
  outb(0x176,0xA0); kv("sec status (no disk)",inb(0x177),2); kv("sec alt",inb(0x376),2); kv("sec err",inb(0x171),2);kv("sec cnt",inb(0x172),2);
  outb(0x1F6,0xB0); dump_ata("slave sel",0x1F0); outb(0x1F7,0xEC); dump_ata("slave identify",0x1F0); kv("slave data",inw(0x1F0),4);
  outb(0x1F6,0xA0); dump_ata("master sel",0x1F0);
  kv("data no drq w",inw(0x1F0),4); kv("data no drq b",inb(0x1F0),2);kv("data no drq l",inl(0x1F0),8);
  outb(0x3F6,0x00); inb(0x1F7); outb(0x1F7,0xEC); dump_ata("identify",0x1F0); kv("status (clears irq)",inb(0x1F7),2); kv("irr after",irr2(),2);
  puts("ident:"); for(int i=0;i<256;i++){putc(' ');hex(inw(0x1F0),4);} putc('\n'); dump_ata("after ident",0x1F0);
  /* word 16 and 8 bit regs */
  kv("word read 1f2",inw(0x1F2),4);
  /* HOB */
  outb(0x1F2,0x12);outb(0x1F2,0x34);outb(0x1F3,0x56);outb(0x1F3,0x78); kv("cnt",inb(0x1F2),2); outb(0x3F6,0x80); kv("hob cnt",inb(0x1F2),2);kv("hob sec",inb(0x1F3),2);kv("hob err",inb(0x1F1),2); kv("hob st",inb(0x1F7),2); kv("dh w/hob",inb(0x1F6),2); outb(0x3F6,0x00);
  /* unknown cmd */
  inb(0x1F7); outb(0x1F7,0x01); dump_ata("unk cmd",0x1F0);
  /* nIEN */
  inb(0x1F7); outb(0x3F6,0x02); outb(0x1F7,0x01); dump_ata("unk nien",0x1F0); outb(0x3F6,0x00); dump_ata("nien cleared",0x1F0); inb(0x1F7);
  /* diag */
  outb(0x1F7,0x90); dump_ata("diag",0x1F0); inb(0x1F7);
  /* read sector capacity */
  { /* capacity from identify: 2048 sectors expected */ }
  sel_lba(0x1F0,2048,1); outb(0x1F7,0x20); dump_ata("read lba=cap",0x1F0); inb(0x1F7);
  sel_lba(0x1F0,5000,1); outb(0x1F7,0x20); dump_ata("read lba>cap",0x1F0); inb(0x1F7);
  sel_lba(0x1F0,2047,2); outb(0x1F7,0x20); dump_ata("read cap-1 n2",0x1F0); inb(0x1F7);
  /* PIO read 2 sectors */
  sel_lba(0x1F0,1,2); outb(0x1F7,0x20); dump_ata("read2",0x1F0); puts("s1:"); for(int i=0;i<4;i++){putc(' ');hex(inw(0x1F0),4);} for(int i=4;i<256;i++)inw(0x1F0); putc('\n'); dump_ata("read2 after first",0x1F0); inb(0x1F7); for(int i=0;i<128;i++)inl(0x1F0); dump_ata("read2 done",0x1F0); inb(0x1F7);
  /* PIO write 1 sector */
  sel_lba(0x1F0,7,1); outb(0x1F7,0x30); dump_ata("write1",0x1F0); for(int i=0;i<256;i++)outw(0x1F0,0x1100+i); dump_ata("write1 done",0x1F0); inb(0x1F7);
  /* set multiple */
  outb(0x1F2,3); outb(0x1F7,0xC6); dump_ata("setmult 3",0x1F0); inb(0x1F7);
  outb(0x1F2,32); outb(0x1F7,0xC6); dump_ata("setmult 32",0x1F0); inb(0x1F7);
  outb(0x1F2,0); outb(0x1F7,0xC6); dump_ata("setmult 0",0x1F0); inb(0x1F7);
  sel_lba(0x1F0,1,2); outb(0x1F7,0xC4); dump_ata("readmult w/ 0",0x1F0); inb(0x1F7);
  outb(0x1F2,4); outb(0x1F7,0xC6); dump_ata("setmult 4",0x1F0); inb(0x1F7);
  outb(0x1F7,0xEC); wait_nbsy(0x1F0); for(int i=0;i<256;i++){u16 w=inw(0x1F0); if(i==59)kv("w59",w,4);} inb(0x1F7);
  outb(0x1F2,3); outb(0x1F3,0x45); outb(0x1F7,0xEF); dump_ata("setfeat 03 w/o feature",0x1F0); inb(0x1F7);
  outb(0x1F1,0x03); outb(0x1F2,0x42); outb(0x1F7,0xEF); dump_ata("setfeat udma2",0x1F0); inb(0x1F7);
  outb(0x1F7,0xEC); wait_nbsy(0x1F0); for(int i=0;i<256;i++){u16 w=inw(0x1F0); if(i==62||i==63||i==88)kv("w",w,4);} inb(0x1F7);
  outb(0x1F1,0x77); outb(0x1F7,0xEF); dump_ata("setfeat bad",0x1F0); inb(0x1F7);
  outb(0x1F7,0xE7); dump_ata("flush",0x1F0); inb(0x1F7);
  outb(0x1F7,0xEA); dump_ata("flush ext",0x1F0); inb(0x1F7);
  /* DMA with bus master disabled */
  for(int i=0;i<1024;i++)buf[i]=0xAA;
  dma_test("dma busmaster off",0xC8,1,1,1,512,1);
  /* enable bus master */
  cfgww(1,1,4,cfgw(1,1,4)|4);
  for(int i=0;i<1024;i++)buf[i]=0xAA;
  dma_test("dma exact",0xC8,1,1,1,512,1);
  dma_test("dma larger",0xC8,1,1,1,1024,1);
  for(int i=0;i<1024;i++)buf[i]=0xAA;
  dma_test("dma smaller",0xC8,1,2,1,512,1);
  dma_test("dma cmd first",0xC8,1,1,1,512,0);
  dma_test("dma lba=cap",0xC8,2048,1,1,512,1);
  dma_test("dma lba=cap smaller",0xC8,2048,2,1,512,1);
  dma_test("dma 2prd exact",0xC8,1,2,2,512,1);
  /* nIEN during dma */
  outb(0x3F6,2); dma_test("dma nien",0xC8,1,1,1,512,1); outb(0x3F6,0);
  /* outside RAM */
  prd[0]=0xE0000000; prd[1]=0x80000200; outb(bm,0); outb(bm+2,6); outl(bm+4,(u32)prd); sel_lba(0x1F0,1,1); outb(0x1F7,0xC8); outb(bm,9); for(volatile int i=0;i<2000000;i++) if(inb(bm+2)&4) break; dump_ata("dma outside ram",0x1F0); outb(bm,8);
  /* bus master off write dma */
  cfgww(1,1,4,cfgw(1,1,4)&~4);
  for(int i=0;i<512;i++)buf[i]=0x5A;
  dma_test("wdma busmaster off",0xCA,9,1,1,512,1);
  sel_lba(0x1F0,9,1); outb(0x1F7,0x20); dump_ata("pio read 9",0x1F0); kv("sec9 w0",inw(0x1F0),4); for(int i=1;i<256;i++)inw(0x1F0); inb(0x1F7);
  /* SRST */
  outb(0x1F6,0xB0); outb(0x3F6,0x04); dump_ata("srst set",0x1F0); outb(0x3F6,0x00); dump_ata("srst cleared (slave sel)",0x1F0); kv("irr",irr2(),2); outb(0x1F6,0xA0); dump_ata("srst master",0x1F0);
  /* LBA48 read at high sector */
  outb(0x1F6,0x40); outb(0x1F2,0); outb(0x1F2,1); outb(0x1F3,0); outb(0x1F3,3); outb(0x1F4,0); outb(0x1F4,0); outb(0x1F5,0);outb(0x1F5,0); outb(0x1F7,0x24); dump_ata("read ext lba3",0x1F0); kv("w0",inw(0x1F0),4); for(int i=1;i<256;i++)inw(0x1F0); dump_ata("read ext after",0x1F0); outb(0x3F6,0x80); dump_ata("hob view",0x1F0); outb(0x3F6,0);
  puts("done\n"); outb(0xF4,0);
}
__attribute__((naked, noreturn)) void _start(void){__asm__ volatile("mov $0x90000,%esp; push %ebx; push %eax; call kmain; 1: hlt; jmp 1b");}
