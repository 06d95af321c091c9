#define _GNU_SOURCE
#include "CMapGuard.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLOTS 1024

/* A slot is free when its end is 0. The handler reads the table without a lock: a slot is
   published by storing its end last, and cleared by storing end 0 first. */
static _Atomic uintptr_t starts[SLOTS];
static _Atomic uintptr_t ends[SLOTS];
static _Atomic int faulted[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t installed = PTHREAD_ONCE_INIT;
static struct sigaction previous;
static long page_size;

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    for (int i = 0; i < SLOTS; i++) {
        uintptr_t end = atomic_load(&ends[i]);
        if (end == 0 || address < atomic_load(&starts[i]) || address >= end) continue;
        void *at = (void *)(address & ~(uintptr_t)(page_size - 1));
        if (mmap(at, (size_t)page_size, PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) {
            atomic_store(&faulted[i], 1);
            return;  /* the read is retried and finds zeros */
        }
        break;
    }
    /* Not a guarded mapping: the handler that was there before takes it (the fault repeats). */
    sigaction(SIGBUS, &previous, NULL);
    (void)sig; (void)context;
}

static void install(void) {
    page_size = sysconf(_SC_PAGESIZE);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &previous);
}

int kvstore_guard_mapping(const void *start, size_t length) {
    if (start == NULL || length == 0) return -1;
    pthread_once(&installed, install);
    pthread_mutex_lock(&lock);
    int slot = -1;
    for (int i = 0; i < SLOTS; i++) {
        if (atomic_load(&ends[i]) == 0) { slot = i; break; }
    }
    if (slot >= 0) {
        atomic_store(&faulted[slot], 0);
        atomic_store(&starts[slot], (uintptr_t)start);
        atomic_store(&ends[slot], (uintptr_t)start + length);
    }
    pthread_mutex_unlock(&lock);
    return slot;
}

int kvstore_guard_faulted(int slot) {
    return slot >= 0 && slot < SLOTS ? atomic_load(&faulted[slot]) : 0;
}

void kvstore_unguard_mapping(int slot) {
    if (slot < 0 || slot >= SLOTS) return;
    pthread_mutex_lock(&lock);
    atomic_store(&ends[slot], 0);
    atomic_store(&starts[slot], 0);
    pthread_mutex_unlock(&lock);
}
