/* Guest memory that can shrink under us. A front-end may truncate the file
 * behind a region after SET_MEM_TABLE; the next access to a page past the
 * new end raises SIGBUS in whichever daemon thread touched it (the guest
 * thread on a ring, the firmware thread writing a fence, a register mirror).
 * The handler looks the address up in a lock-free table of the daemon's
 * guest-memory mappings; when it is inside one, it maps anonymous memory over
 * that whole mapping (MAP_FIXED, so the faulting access completes against
 * zero pages), counts the fault on the mapping's slot and returns. The guest
 * thread reads the count after each batch and ends that guest's connection
 * with NEEDS_RESET. A SIGBUS anywhere else goes to the previous handler, or
 * kills the process as before. Everything in the handler is async-signal-safe:
 * atomics on a static table and raw syscalls. docs/fuzzing.md has the design. */
#define _GNU_SOURCE
#include "cpvzshim.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { SLOT_FREE = 0, SLOT_CLAIMED = 1, SLOT_LIVE = 2 };

struct guard_slot {
    int state;
    uintptr_t base;
    size_t length;
    unsigned faults;
};

static struct guard_slot slots[PVZ_GUARD_SLOTS];
static struct sigaction previous;
static pthread_once_t installed = PTHREAD_ONCE_INIT;
static int install_error;

static void die_by_default(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGBUS, &dfl, NULL);
}

/* A fault outside guest memory is a daemon bug: the handler that was there
 * before (the Swift backtracer, a sanitizer, libFuzzer) reports it; then, or
 * without one, the default action: returning re-executes the access, which
 * faults again with SIGBUS no longer caught, and the process dies as before. */
static void chain_previous(int sig, siginfo_t *info, void *uctx)
{
    if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
        previous.sa_sigaction(sig, info, uctx);
    } else if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler != SIG_DFL
               && previous.sa_handler != SIG_IGN && previous.sa_handler != NULL) {
        previous.sa_handler(sig);
    }
    die_by_default();
}

static void on_sigbus(int sig, siginfo_t *info, void *uctx)
{
    int saved = errno;
    /* Sent with kill() or sigqueue(), not a fault: die as SIGBUS does. */
    if (info->si_code <= 0) {
        die_by_default();
        raise(SIGBUS);
        return;
    }
    {
        uintptr_t a = (uintptr_t)info->si_addr;
        for (int i = 0; i < PVZ_GUARD_SLOTS; i++) {
            struct guard_slot *s = &slots[i];
            if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_LIVE) continue;
            uintptr_t base = __atomic_load_n(&s->base, __ATOMIC_RELAXED);
            size_t length = __atomic_load_n(&s->length, __ATOMIC_RELAXED);
            if (a < base || a - base >= length) continue;
            /* The whole mapping, so a hugetlbfs mapping is replaced at its own
             * alignment and every later access to it is harmless too. */
            long r = syscall(SYS_mmap, (void *)base, length, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
            if (r == -1) break;  /* cannot repair: crash rather than loop on the fault */
            __atomic_add_fetch(&s->faults, 1, __ATOMIC_RELEASE);
            errno = saved;
            return;
        }
    }
    errno = saved;
    chain_previous(sig, info, uctx);
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &previous) != 0) install_error = errno;
}

int pvz_guard_install(void)
{
    pthread_once(&installed, install);
    return install_error ? -1 : 0;
}

int pvz_guard_register(void *base, size_t length)
{
    if (pvz_guard_install() != 0) return -1;
    for (int i = 0; i < PVZ_GUARD_SLOTS; i++) {
        struct guard_slot *s = &slots[i];
        int expected = SLOT_FREE;
        if (!__atomic_compare_exchange_n(&s->state, &expected, SLOT_CLAIMED, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) continue;
        __atomic_store_n(&s->base, (uintptr_t)base, __ATOMIC_RELAXED);
        __atomic_store_n(&s->length, length, __ATOMIC_RELAXED);
        __atomic_store_n(&s->faults, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->state, SLOT_LIVE, __ATOMIC_RELEASE);
        return i;
    }
    errno = ENOSPC;
    return -1;
}

void pvz_guard_unregister(int slot)
{
    if (slot < 0 || slot >= PVZ_GUARD_SLOTS) return;
    __atomic_store_n(&slots[slot].state, SLOT_FREE, __ATOMIC_RELEASE);
}

unsigned pvz_guard_faults(int slot)
{
    if (slot < 0 || slot >= PVZ_GUARD_SLOTS) return 0;
    return __atomic_load_n(&slots[slot].faults, __ATOMIC_ACQUIRE);
}
