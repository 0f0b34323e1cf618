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
static void wait_nbsy(u16 base){int n=0;while((inb(base+7)&0x80)&&n<1000000)n++;}
static void sel_lba(u16 b,u32 lba,u8 cnt){outb(b+6,0xE0|((lba>>24)&15));outb(b+2,cnt);outb(b+3,lba);outb(b+4,lba>>8);outb(b+5,lba>>16);}
static void dump_ata(const char*tag,u16 b){puts(tag);puts(": st=");hex(inb(b+0x206),2);puts(" err=");hex(inb(b+1),2);puts(" cnt=");hex(inb(b+2),2);puts(" sec=");hex(inb(b+3),2);puts(" cl=");hex(inb(b+4),2);puts(" ch=");hex(inb(b+5),2);puts(" dh=");hex(inb(b+6),2);puts(" bmis=");hex(inb(bm+2),2);puts(" bmic=");hex(inb(bm),2);puts(" irr=");hex(irr2(),2);putc('\n');}
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
