/* vfork.S: the preload library's vfork(), so that a traced parent records
 * the child it starts (--follow-fork; spawn.c does the rest).
 *
 * vfork cannot be wrapped by a C function: the child runs on the parent's
 * stack until it execs or exits, and a child returning through a wrapper's
 * frame would leave that frame wrecked for the parent. As glibc's own vfork
 * does, the return address is kept in a register across the system call
 * (the kernel gives the parent its registers back) and pushed again after
 * it. Only then, in the parent, is C code called.
 *
 * No GNU property note here: this code does not keep a shadow stack (CET)
 * in step, so the library must not claim to. */
#include <sys/syscall.h>

        .text
        .globl  vfork
        .type   vfork, @function
        .p2align 4
vfork:
        .cfi_startproc
        subq    $8, %rsp                /* aligns the stack for the call */
        .cfi_adjust_cfa_offset 8
        call    mt__vfork_enter
        addq    $8, %rsp
        .cfi_adjust_cfa_offset -8
        popq    %rdi                    /* return address, out of the stack */
        .cfi_adjust_cfa_offset -8
        .cfi_register %rip, %rdi
        movl    $SYS_vfork, %eax
        syscall
        pushq   %rdi
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %rip, 0
        cmpq    $-4095, %rax
        jae     .Lfailed
        testq   %rax, %rax
        jz      .Lchild
        pushq   %rax                    /* the parent: pid in rax */
        .cfi_adjust_cfa_offset 8
        movl    %eax, %edi
        call    mt__vfork_parent
        popq    %rax
        .cfi_adjust_cfa_offset -8
.Lchild:
        ret
.Lfailed:
        pushq   %rax                    /* rax = -errno */
        .cfi_adjust_cfa_offset 8
        movq    %rax, %rdi
        call    mt__vfork_failed        /* sets errno, returns -1 */
        popq    %rcx
        .cfi_adjust_cfa_offset -8
        ret
        .cfi_endproc
        .size   vfork, .-vfork

        .section .note.GNU-stack, "", @progbits
