/* Multiboot v1 header and entry point (Multiboot Specification 0.6.96, sections 3.1 and 3.2). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003   /* bit 0: page-align modules, bit 1: memory information wanted */

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text.entry, "ax"
    .globl _start
_start:
    cli
    cld
    movl $boot_stack_top, %esp
    xorl %ebp, %ebp
    movl %eax, %esi              /* keep magic and info pointer across the BSS clear */
    movl %ebx, %edx
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl
    pushl %edx                   /* mbi */
    pushl %esi                   /* magic */
    call lib_start
    pushl $0
    call exit                    /* kmain returned: exit(0) */
1:  cli
    hlt
    jmp 1b

/* int run_user(void (*fn)(void), void *user_stack_top) */
    .text
    .globl run_user
run_user:
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    pushfl
    movl %esp, user_ctx_esp
    movl 24(%esp), %ecx          /* fn */
    movl 28(%esp), %edx          /* user stack top */
    pushfl
    popl %eax
    andl $~0x3000, %eax          /* IOPL 0 */
    movw $0x23, %bx
    movw %bx, %ds
    movw %bx, %es
    movw %bx, %fs
    movw %bx, %gs
    pushl $0x23                  /* SS */
    pushl %edx                   /* ESP */
    pushl %eax                   /* EFLAGS */
    pushl $0x1B                  /* CS */
    pushl %ecx                   /* EIP */
    iret

/* void user_return(int value): back to the run_user caller, at CPL 0. */
    .globl user_return
user_return:
    movl 4(%esp), %eax
    movw $0x10, %cx
    movw %cx, %ds
    movw %cx, %es
    movw %cx, %fs
    movw %cx, %gs
    movl user_ctx_esp, %esp
    popfl
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret

    .bss
    .align 16
    .globl boot_stack_bottom, boot_stack_top
boot_stack_bottom:
    .space 16384
boot_stack_top:
    .align 4
user_ctx_esp:
    .space 4
