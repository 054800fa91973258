/*
 * livemig's write-protect dirty log, the half that runs beside QEMU: reads which pages of QEMU's
 * guest RAM mapping were written since they were last protected, and protects them again, with
 * one PAGEMAP_SCAN ioctl walk over /proc/PID/pagemap (PM_SCAN_WP_MATCHING). The kernel tests and
 * re-protects each page under its page-table lock, so a page written after the walk passed it is
 * reported by the next walk: read-and-clear is atomic per page.
 *
 * Usage: wp-reader PID START LENGTH PAGE_SIZE [REGIONS] (START and LENGTH in hex, as
 * wp-preload.c reports them; REGIONS, the most runs of pages one ioctl returns, default 4096). Commands arrive on standard input, one byte each; each gets one answer on standard
 * output, little-endian: int32 status (0, or a negative errno) and uint32 count, then for 't'
 * `count` uint32 page numbers (ascending, from the start of the mapping).
 *   't'  take: the written pages, protecting them again;
 *   'a'  arm: the same, answering only the count (protects everything written so far);
 *   'p'  peek: how many pages are written now, protecting nothing.
 * End of input ends the reader.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* The kernel's uapi (linux/fs.h since 6.7); defined here because older headers lack it. */
struct page_region {
    uint64_t start, end, categories;
};
struct pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#define PAGE_IS_WRITTEN (1 << 1)

static int pagemap;
static uint64_t base, length, page_size;
/* Runs of pages per ioctl; a walk that fills them goes on where it stopped. */
static struct page_region *regions;
static uint64_t region_count = 4096;
static uint32_t *pages;

/*
 * Walks the whole mapping once; with `protect`, re-protects what it reports. Fills `pages` when
 * `list` (else only counts). Returns the count, or a negative errno.
 */
static int64_t walk(int protect, int list) {
    uint64_t at = base, end = base + length;
    int64_t count = 0;
    while (at < end) {
        struct pm_scan_arg arg = {
            .size = sizeof arg,
            .flags = PM_SCAN_CHECK_WPASYNC | (protect ? PM_SCAN_WP_MATCHING : 0),
            .start = at,
            .end = end,
            .vec = (uint64_t)(uintptr_t)regions,
            .vec_len = region_count,
            .category_mask = PAGE_IS_WRITTEN,
            .return_mask = PAGE_IS_WRITTEN,
        };
        long n = ioctl(pagemap, PAGEMAP_SCAN, &arg);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        for (long i = 0; i < n; i++) {
            uint64_t first = (regions[i].start - base) / page_size, last = (regions[i].end - base) / page_size;
            if (list)
                for (uint64_t p = first; p < last; p++) pages[count++] = (uint32_t)p;
            else
                count += (int64_t)(last - first);
        }
        /* Fewer runs than room for them: the walk reached the end. (walk_end is then not to be
         * trusted: where the kernel stopped and went on by itself, it may still say the first stop.) */
        if ((uint64_t)n < region_count) break;
        /* Full: go on after the last run, or where the walk stopped if it went further. */
        uint64_t next = arg.walk_end > regions[n - 1].end ? arg.walk_end : regions[n - 1].end;
        if (next <= at) return -EIO; /* no progress: never loop for ever */
        at = next;
    }
    return count;
}

static int write_all(const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int answer(int64_t result, int list) {
    int32_t header[2] = { result < 0 ? (int32_t)result : 0, result < 0 ? 0 : (int32_t)result };
    if (write_all(header, sizeof header) != 0) return -1;
    if (list && result > 0) return write_all(pages, (size_t)result * sizeof *pages);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: wp-reader PID START LENGTH PAGE_SIZE [REGIONS]\n");
        return 2;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/pagemap", argv[1]);
    base = strtoull(argv[2], NULL, 16);
    length = strtoull(argv[3], NULL, 16);
    page_size = strtoull(argv[4], NULL, 10);
    /* The kernel reports host pages; a guest page of another size would need converting. */
    if (page_size != (uint64_t)sysconf(_SC_PAGESIZE)) {
        fprintf(stderr, "wp-reader: guest pages of %s bytes; this host's pages are %ld bytes\n", argv[4], sysconf(_SC_PAGESIZE));
        return 2;
    }
    if (length == 0 || length % page_size != 0 || length / page_size > UINT32_MAX) {
        fprintf(stderr, "wp-reader: bad range %s+%s or page size %s\n", argv[2], argv[3], argv[4]);
        return 2;
    }
    pagemap = open(path, O_RDONLY | O_CLOEXEC);
    if (pagemap < 0) {
        fprintf(stderr, "wp-reader: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (argc == 6) region_count = strtoull(argv[5], NULL, 10);
    if (region_count == 0 || region_count > (1u << 20)) {
        fprintf(stderr, "wp-reader: bad region count %s\n", argv[5]);
        return 2;
    }
    pages = malloc((size_t)(length / page_size) * sizeof *pages);
    regions = malloc((size_t)region_count * sizeof *regions);
    if (pages == NULL || regions == NULL) {
        fprintf(stderr, "wp-reader: out of memory\n");
        return 1;
    }
    for (;;) {
        char command;
        ssize_t n = read(STDIN_FILENO, &command, 1);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        int rc;
        switch (command) {
        case 't': rc = answer(walk(1, 1), 1); break;
        case 'a': rc = answer(walk(1, 0), 0); break;
        case 'p': rc = answer(walk(0, 0), 0); break;
        default: rc = answer(-EINVAL, 0); break;
        }
        if (rc != 0) return 1;
    }
}
