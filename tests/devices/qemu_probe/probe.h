/* Shared preamble of the QEMU reference probes (see README.md): port I/O, debug console output, PCI
   configuration mechanism #1, PIC IRR, ATA register dump and a bus master DMA test.
   A probe that must sample registers inside QEMU's BSY window defines PROBE_DUMP_NO_BSY_WAIT first. */
#ifndef QEMU_PROBE_H
#define QEMU_PROBE_H
typedef unsigned char u8; typedef unsigned short u16; typedef unsigned int u32;
__attribute__((section(".multiboot"), used)) static const u32 mbh[3] = {0x1BADB002, 0, -(0x1BADB002)};
static inline void outb(u16 p, u8 v){__asm__ volatile("outb %0,%1"::"a"(v),"Nd"(p));}
static inline void outw(u16 p, u16 v){__asm__ volatile("outw %0,%1"::"a"(v),"Nd"(p));}
static inline void outl(u16 p, u32 v){__asm__ volatile("outl %0,%1"::"a"(v),"Nd"(p));}
static inline u8 inb(u16 p){u8 v;__asm__ volatile("inb %1,%0":"=a"(v):"Nd"(p));return v;}
static inline u16 inw(u16 p){u16 v;__asm__ volatile("inw %1,%0":"=a"(v):"Nd"(p));return v;}
static inline u32 inl(u16 p){u32 v;__asm__ volatile("inl %1,%0":"=a"(v):"Nd"(p));return v;}
static void putc(char c){outb(0xE9,c);}
static void puts(const char*s){while(*s)putc(*s++);}
static void hex(u32 v,int n){for(int i=n-1;i>=0;i--)putc("0123456789abcdef"[(v>>(i*4))&15]);}
static void kv(const char*k,u32 v,int n){puts(k);putc('=');hex(v,n);putc('\n');}
static u32 cfgaddr(int d,int f,int r){return 0x80000000u|(d<<11)|(f<<8)|(r&0xfc);}
static u32 cfgl(int d,int f,int r){outl(0xCF8,cfgaddr(d,f,r));return inl(0xCFC);}
static void cfgwl(int d,int f,int r,u32 v){outl(0xCF8,cfgaddr(d,f,r));outl(0xCFC,v);}
static u16 cfgw(int d,int f,int r){outl(0xCF8,cfgaddr(d,f,r));return inw(0xCFC+(r&2));}
static void cfgww(int d,int f,int r,u16 v){outl(0xCF8,cfgaddr(d,f,r));outw(0xCFC+(r&2),v);}
static u8 cfgb(int d,int f,int r){outl(0xCF8,cfgaddr(d,f,r));return inb(0xCFC+(r&3));}
static u8 irq_seen(void){ outb(0x20,0x0a); return inb(0x20); } /* IRR master */
static u8 irr2(void){ outb(0xA0,0x0a); return inb(0xA0); }
static volatile u8 buf[65536*2] __attribute__((aligned(65536)));
static volatile u32 prd[64] __attribute__((aligned(4096)));
static u16 bm;
static void wait_nbsy(u16 base){int n=0;while((inb(base+0x206)&0x80)&&n<10000000)n++;}
static void sel_lba(u16 b,u32 lba,u8 cnt){outb(b+6,0xE0|((lba>>24)&15));outb(b+2,cnt);outb(b+3,lba);outb(b+4,lba>>8);outb(b+5,lba>>16);}
static void dump_ata(const char*tag,u16 b){
#ifndef PROBE_DUMP_NO_BSY_WAIT
  for(int n=0;(inb(b+0x206)&0x80)&&n<10000000;n++); /* QEMU completes commands asynchronously */
#endif
  puts(tag);puts(": st=");hex(inb(b+0x206),2);puts(" err=");hex(inb(b+1),2);puts(" cnt=");hex(inb(b+2),2);puts(" sec=");hex(inb(b+3),2);puts(" cl=");hex(inb(b+4),2);puts(" ch=");hex(inb(b+5),2);puts(" dh=");hex(inb(b+6),2);puts(" bmis=");hex(inb(bm+2),2);puts(" bmic=");hex(inb(bm),2);puts(" irr=");hex(irr2(),2);putc('\n');}
static void dma_test(const char*tag,u8 cmd,u32 lba,u8 cnt,int nprd,u32 len_each,int start_first){
  for(int i=0;i<nprd;i++){prd[2*i]=(u32)(buf)+i*len_each;prd[2*i+1]=(len_each&0xffff)|(i==nprd-1?0x80000000u:0);}
  outb(bm,0); outb(bm+2,0x06); outl(bm+4,(u32)prd);
  sel_lba(0x1F0,lba,cnt); inb(0x1F7);
  u8 dir = (cmd==0xC8||cmd==0x25)?8:0;
  if(start_first){outb(bm,dir|1); outb(0x1F7,cmd);} else {outb(0x1F7,cmd); puts(tag);puts(" pre: bmis=");hex(inb(bm+2),2);puts(" st=");hex(inb(0x3F6),2);putc('\n'); outb(bm,dir|1);}
  for(volatile int i=0;i<2000000;i++) if(inb(bm+2)&4) break;
  dump_ata(tag,0x1F0);
  outb(bm,dir); puts(tag); puts(" after stop bmis=");hex(inb(bm+2),2);puts(" st=");hex(inb(0x1F7),2);puts(" buf0=");hex(buf[0],2);hex(buf[1],2);hex(buf[512],2);putc('\n');
}
static void wb(void){int n=0;while((inb(0x3F6)&0x80)&&n<10000000)n++;}
#endif
