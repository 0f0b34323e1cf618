#include "probe.h"
static void lv(const char*tag){ u8 r=irr2(); puts(tag); puts(": irq14="); putc('0'+((r>>6)&1)); puts(" irq15="); putc('0'+((r>>7)&1)); putc('\n'); }
void kmain(u32 magic, u32 mbi){
  outb(0x20,0x11);outb(0x21,0x20);outb(0x21,4);outb(0x21,1);outb(0xA0,0x11);outb(0xA1,0x28);outb(0xA1,2);outb(0xA1,1);outb(0x21,0xff);outb(0xA1,0xff);
  outb(0x4D1, 0xC0); /* IRQ14/15 level-triggered: IRR mirrors the line */
  bm = cfgl(1,1,0x20)&0xfff0; cfgww(1,1,4,cfgw(1,1,4)|4);
  lv("boot");
  outb(0x1F6,0xA0); inb(0x1F7); lv("select+status");
  outb(0x1F7,0xEC); wb(); lv("identify"); inb(0x3F6); lv("after alt"); inb(0x1F7); lv("after status");
  for(int i=0;i<256;i++)inw(0x1F0); lv("identify drained");
  outb(0x1F7,0xEC); wb(); lv("identify2"); outb(0x1F7,0xE5); lv("cmd during drq"); kv("st",inb(0x3F6),2); for(int i=0;i<256;i++)inw(0x1F0); inb(0x1F7);
  sel_lba(0x1F0,40,2); outb(0x1F7,0x30); wb(); lv("write cmd"); for(int i=0;i<256;i++)outw(0x1F0,i); wb(); lv("write blk1"); inb(0x1F7); lv("write blk1 status"); for(int i=0;i<256;i++)outw(0x1F0,i); wb(); lv("write blk2");  inb(0x1F7);
  sel_lba(0x1F0,40,2); outb(0x1F7,0x20); wb(); lv("read cmd"); inb(0x1F7); for(int i=0;i<256;i++)inw(0x1F0); wb(); lv("read blk1 drained"); inb(0x1F7); for(int i=0;i<256;i++)inw(0x1F0); wb(); lv("read blk2 drained");
  outb(0x3F6,0x02); outb(0x1F7,0x01); wb(); lv("nien abort"); kv("st",inb(0x3F6),2); outb(0x3F6,0x00); lv("nien cleared"); inb(0x1F7);
  outb(0x1F7,0x01); wb(); lv("abort"); outb(0x3F6,0x02); lv("nien set while pending"); outb(0x3F6,0x00); inb(0x1F7); lv("status");
  outb(0x3F6,0x04); wb(); lv("srst set"); outb(0x3F6,0x00); wb(); lv("srst clear"); inb(0x1F7); lv("status");
  outb(0x3F6,0x06); wb(); outb(0x3F6,0x02); wb(); lv("srst with nien"); outb(0x3F6,0x00); inb(0x1F7);
  outb(0x1F6,0xA0);
  for(int i=0;i<512;i++)buf[i]=0;
  prd[0]=(u32)buf; prd[1]=0x80000200; outb(bm,0); outb(bm+2,6); outl(bm+4,(u32)prd); sel_lba(0x1F0,1,1); inb(0x1F7); outb(0x1F7,0xC8); lv("dma cmd"); outb(bm,9); for(volatile int i=0;i<2000000;i++) if(inb(bm+2)&4) break; lv("dma done"); kv("bmis",inb(bm+2),2); outb(bm,8); lv("dma stop"); inb(0x1F7); lv("dma status");
  /* secondary with no drives */
  outb(0x176,0xA0); outb(0x177,0xEC); lv("sec identify"); kv("sec st",inb(0x376),2); inb(0x177); lv("sec status");
  outb(0x177,0x20); lv("sec read"); outb(0x376,0x04); lv("sec srst"); outb(0x376,0x00); inb(0x177); lv("sec status2");
  /* absent slave on primary */
  outb(0x1F6,0xB0); outb(0x1F7,0xEC); lv("slave identify"); inb(0x1F7); outb(0x1F6,0xA0);
  /* geometry */
  outb(0x1F7,0xEC); wb(); puts("geo:"); for(int i=0;i<256;i++){u16 w=inw(0x1F0); if(i==1||i==3||i==6||i==54||i==55||i==56||i==57||i==58){putc(' ');hex(w,4);}} putc('\n'); inb(0x1F7);
  puts("done\n"); outb(0xF4,0);
}
__attribute__((naked, noreturn)) void _start(void){__asm__ volatile("mov $0x90000,%esp; push %ebx; push %eax; call kmain; 1: hlt; jmp 1b");}
