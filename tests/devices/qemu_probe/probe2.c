#define PROBE_DUMP_NO_BSY_WAIT  /* some lines are sampled inside QEMU's BSY window on purpose */
#include "probe.h"
void kmain(u32 magic, u32 mbi){
  bm = cfgl(1,1,0x20)&0xfff0; cfgww(1,1,4,cfgw(1,1,4)|4);
  outb(0x1F6,0xA0); wb();
  /* byte read of data during DRQ */
  sel_lba(0x1F0,1,1); outb(0x1F7,0x20); wb(); dump_ata("pio1",0x1F0);
  kv("byte data",inb(0x1F0),2); kv("next word",inw(0x1F0),4); kv("dword",inl(0x1F0),8);
  for(int i=0;i<252;i++){u16 x=inw(0x1F0); if(i>=249) {kv("tailw",x,4);} }
  dump_ata("pio1 end",0x1F0);
  /* multi-sector PIO read statuses */
  sel_lba(0x1F0,1,3); outb(0x1F7,0x20); wb(); dump_ata("r3 blk1",0x1F0); for(int i=0;i<256;i++)inw(0x1F0); dump_ata("r3 after blk1 raw",0x1F0); wb(); dump_ata("r3 blk2",0x1F0); for(int i=0;i<256;i++)inw(0x1F0); wb(); for(int i=0;i<256;i++)inw(0x1F0); wb(); dump_ata("r3 end",0x1F0);
  /* PIO write 2 sectors statuses */
  sel_lba(0x1F0,20,2); outb(0x1F7,0x30); wb(); dump_ata("w2 start",0x1F0); for(int i=0;i<256;i++)outw(0x1F0,0x2200+i); wb(); dump_ata("w2 blk1 done",0x1F0); for(int i=0;i<256;i++)outw(0x1F0,0x3300+i); wb(); dump_ata("w2 end",0x1F0);
  sel_lba(0x1F0,21,1); outb(0x1F7,0x20); wb(); kv("sec21 w0",inw(0x1F0),4); for(int i=1;i<256;i++)inw(0x1F0);
  /* read multiple with mult=2 over 3 sectors */
  outb(0x1F2,2); outb(0x1F7,0xC6); wb(); dump_ata("setmult2",0x1F0);
  sel_lba(0x1F0,1,3); outb(0x1F7,0xC4); wb(); dump_ata("rm blk1",0x1F0); for(int i=0;i<512;i++)inw(0x1F0); wb(); dump_ata("rm blk2",0x1F0); for(int i=0;i<256;i++)inw(0x1F0); wb(); dump_ata("rm end",0x1F0);
  outb(0x1F2,3); outb(0x1F7,0xC6); wb(); dump_ata("setmult3",0x1F0);
  /* write multiple */
  outb(0x1F2,2); outb(0x1F7,0xC6); wb();
  sel_lba(0x1F0,30,3); outb(0x1F7,0xC5); wb(); dump_ata("wm start",0x1F0); for(int i=0;i<512;i++)outw(0x1F0,0x4400+i); wb(); dump_ata("wm blk1",0x1F0); for(int i=0;i<256;i++)outw(0x1F0,0x5500+i); wb(); dump_ata("wm end",0x1F0);
  /* flush */
  outb(0x1F7,0xE7); wb(); dump_ata("flush",0x1F0);
  /* busmaster off write DMA */
  cfgww(1,1,4,cfgw(1,1,4)&~4);
  for(int i=0;i<512;i++)buf[i]=0x5A;
  dma_test("wdma bm off",0xCA,9,1,1,512,1); wb();
  sel_lba(0x1F0,9,1); outb(0x1F7,0x20); wb(); kv("sec9 w0",inw(0x1F0),4); for(int i=1;i<256;i++)inw(0x1F0);
  for(int i=0;i<512;i++)buf[i]=0x5A;
  dma_test("rdma bm off",0xC8,9,1,1,512,1); wb();
  cfgww(1,1,4,cfgw(1,1,4)|4);
  /* read DMA with PRD table in non-RAM */
  outb(bm,0); outb(bm+2,6); outl(bm+4,0xE0000000); sel_lba(0x1F0,1,1); outb(0x1F7,0xC8); outb(bm,9); for(volatile int i=0;i<2000000;i++) if(inb(bm+2)&4) break; dump_ata("prd outside ram",0x1F0); outb(bm,8); wb();
  /* write while DRQ ignored */
  sel_lba(0x1F0,1,1); outb(0x1F7,0x20); wb(); outb(0x1F2,0x77); dump_ata("write cnt during drq",0x1F0); outb(0x1F7,0xEC); dump_ata("cmd during drq",0x1F0); for(int i=0;i<256;i++)inw(0x1F0); wb();
  /* stop mid: start dma of 128 sectors then stop immediately */
  for(int i=0;i<65536;i++)buf[i]=0xAA;
  prd[0]=(u32)buf; prd[1]=0x80000000; outb(bm,0); outb(bm+2,6); outl(bm+4,(u32)prd); sel_lba(0x1F0,0,128); outb(0x1F7,0xC8); outb(bm,9); outb(bm,8); dump_ata("stop immediately",0x1F0); wb(); dump_ata("stop later",0x1F0); kv("buf last", buf[65535],2);
  /* SRST with master selected */
  outb(0x1F6,0xA0); outb(0x3F6,0x04); dump_ata("srst set m",0x1F0); for(volatile int i=0;i<100000;i++); dump_ata("srst set m later",0x1F0); outb(0x3F6,0x00); dump_ata("srst clr m",0x1F0);
  outb(0x3F6,0x06); for(volatile int i=0;i<100000;i++); outb(0x3F6,0x02); dump_ata("srst nien",0x1F0);
  /* data read after srst */
  kv("data after srst",inw(0x1F0),4);
  /* 0x1F7 cmd ignored when no drive on secondary */
  outb(0x177,0xEC); kv("sec st",inb(0x177),2);
  /* device/head readback */
  outb(0x1F6,0x0F); kv("dh 0f",inb(0x1F6),2); outb(0x1F6,0xA0);
  /* identify w/ select LBA bits */
  puts("done\n"); outb(0xF4,0);
}
__attribute__((naked, noreturn)) void _start(void){__asm__ volatile("mov $0x90000,%esp; push %ebx; push %eax; call kmain; 1: hlt; jmp 1b");}
