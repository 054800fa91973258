/*
 * livemig's write-protect dirty log, the half that lives inside QEMU (loaded with LD_PRELOAD).
 *
 * When QEMU maps its guest RAM file (the one LIVEMIG_WP_RAM_PATH names), this library registers
 * the mapping with a userfaultfd in asynchronous write-protect mode (UFFD_FEATURE_WP_ASYNC) and
 * write-protects all of it. From then on the kernel itself clears a page's protection at its
 * first write, without stopping QEMU; the reader (wp-reader.c) finds those pages from outside
 * with the PAGEMAP_SCAN ioctl on /proc/PID/pagemap and protects them again in the same call.
 * The userfaultfd stays open for QEMU's life: closing it would end the registration.
 *
 * Whatever happens, QEMU runs on: a failure only leaves the mapping unregistered. The outcome
 * goes to the file LIVEMIG_WP_STATUS names, as one line: "ok <start> <length>" (hex address and
 * bytes of the mapping, in QEMU's address space) or "failed <step>: <error>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* Headers older than the kernel (Debian 12 ships 6.1's) lack these; the kernel decides at run time. */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

/* Set once the RAM mapping was handled (registered or failed): only the first match counts. */
static int handled;

/* Writes the status line; errors here are ignored, the reader then finds no status. */
static void report(const char *fmt, ...) {
    const char *path = getenv("LIVEMIG_WP_STATUS");
    if (path == NULL) return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    ssize_t ignored = write(fd, line, (size_t)n);
    (void)ignored;
    close(fd);
}

/* True if `fd` is the file LIVEMIG_WP_RAM_PATH names (compared by what /proc says it is). */
static int is_ram_file(int fd) {
    const char *want = getenv("LIVEMIG_WP_RAM_PATH");
    if (want == NULL || fd < 0) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    return strcmp(path, want) == 0;
}

/* A userfaultfd in async write-protect mode, or -1 with errno set. */
static int open_wp_uffd(void) {
    /* Without privilege (vm.unprivileged_userfaultfd=0) only a user-mode-only uffd is allowed;
     * async write-protect resolves kernel-mode writes as well, so nothing is lost by it. */
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0 && errno == EPERM) uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (uffd < 0) return -1;
    struct uffdio_api api = {
        .api = UFFD_API,
        .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
    };
    if (ioctl(uffd, UFFDIO_API, &api) != 0) {
        int saved = errno;
        close(uffd);
        errno = saved;
        return -1;
    }
    return uffd;
}

/* Registers and write-protects [addr, addr + len); reports the outcome. Never fails QEMU. */
static void track(void *addr, size_t len) {
    int uffd = open_wp_uffd();
    if (uffd < 0) {
        report("failed userfaultfd: %s\n", strerror(errno));
        return;
    }
    struct uffdio_register reg = {
        .range = { .start = (uint64_t)(uintptr_t)addr, .len = len },
        .mode = UFFDIO_REGISTER_MODE_WP,
    };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
        report("failed register: %s\n", strerror(errno));
        close(uffd);
        return;
    }
    struct uffdio_writeprotect wp = {
        .range = { .start = (uint64_t)(uintptr_t)addr, .len = len },
        .mode = UFFDIO_WRITEPROTECT_MODE_WP,
    };
    if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0) {
        int saved = errno;
        struct uffdio_range range = { .start = (uint64_t)(uintptr_t)addr, .len = len };
        ioctl(uffd, UFFDIO_UNREGISTER, &range);
        close(uffd);
        report("failed writeprotect: %s\n", strerror(saved));
        return;
    }
    /* uffd stays open on purpose: the registration lives as long as it does. */
    report("ok %llx %llx\n", (unsigned long long)(uintptr_t)addr, (unsigned long long)len);
}

/* The system call itself, so that this file needs no dlsym and calls no other mmap. */
static void *real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, offset);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
    void *mapped = real_mmap(addr, len, prot, flags, fd, offset);
    if (mapped != MAP_FAILED && (flags & MAP_SHARED) && (prot & PROT_WRITE) && !__atomic_load_n(&handled, __ATOMIC_ACQUIRE) &&
        is_ram_file(fd) && !__atomic_exchange_n(&handled, 1, __ATOMIC_ACQ_REL)) {
        int saved = errno;
        track(mapped, len);
        errno = saved;
    }
    return mapped;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
    return mmap(addr, len, prot, flags, fd, offset);
}
