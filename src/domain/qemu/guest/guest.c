/*
 * livemig's QEMU test guest: a 32-bit multiboot kernel that writes its own memory at a paced
 * rate and keeps checking it.
 *
 * Every page of its region has a version in a table; a page's content is a function of
 * (page index, version) alone: word 0 is the page index, word 1 the version, the rest an
 * xorshift stream seeded from both. So any page can be verified at any time, by the guest or by
 * anyone reading its RAM. Between paced writes the guest verifies pages in order, round and
 * round. On COM1 it prints one line when it starts, one a second, and one per page found wrong:
 *
 *   guest: running pages=<n> first=0x<addr> table=0x<addr> rate=<n> tsc_hz=<n>
 *   t=<s> writes=<n> checked=<n> passes=<n> errors=<n>
 *   check failed: page=<n> version=<n> word=<n> want=0x<hex> got=0x<hex>
 *
 * A page found wrong is counted once, then written afresh with its next version. `t` counts
 * seconds of guest time (the TSC, which stands still while QEMU is stopped).
 *
 * Kernel command line (each optional):
 *   rate=<pages/s>  page writes per second; 0 writes as fast as it can (default 1000)
 *   mib=<n>         size of the written region in MiB (default: all RAM above the table)
 *
 * Built with gcc -m32 -ffreestanding -nostdlib: no libc and no libgcc, hence div64 below.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define PAGE_SIZE 4096u
#define PAGE_WORDS (PAGE_SIZE / 4u)
/* The version table starts at 2 MiB, above the kernel (loaded at 1 MiB) and the boot
 * information the loader puts right after it; the pages follow the table. */
#define TABLE_BASE 0x200000u
#define DEFAULT_RATE 1000u

#define COM1 0x3F8
#define PIT_HZ 1193182u
#define CALIBRATION_RUNS 3

/* Multiboot (v1) header; flag bit 1 asks the loader for the memory size. */
#define MB_MAGIC 0x1BADB002u
#define MB_FLAGS 0x00000002u
#define MB_BOOT_MAGIC 0x2BADB002u
__attribute__((section(".multiboot"), used, aligned(4)))
static const u32 multiboot_header[3] = { MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS) };

unsigned char boot_stack[16384] __attribute__((aligned(16)));
void kmain(u32 magic, const u32 *info);

/* The loader enters in 32-bit protected mode with flat segments, paging and interrupts off. */
__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  lea boot_stack+16384, %esp\n"
        "  push %ebx\n"
        "  push %eax\n"
        "  call kmain\n"
        "1: hlt\n"
        "  jmp 1b\n");

static inline void outb(u16 port, u8 value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }

/* n / d for a 32-bit divisor in two divl steps; the high remainder is below d, so the second
 * step cannot overflow. */
static u64 div64(u64 n, u32 d, u32 *remainder)
{
    u32 hi = (u32)(n >> 32), q_hi = hi / d, r = hi % d, q_lo;
    __asm__("divl %4" : "=a"(q_lo), "=d"(r) : "a"((u32)n), "d"(r), "rm"(d));
    if (remainder) *remainder = r;
    return ((u64)q_hi << 32) | q_lo;
}

/* ---- serial output ---- */

static void put_char(char c)
{
    while (!(inb(COM1 + 5) & 0x20)) { } /* transmit holding register empty */
    outb(COM1, (u8)c);
}
static void put_str(const char *s) { while (*s) put_char(*s++); }
static void put_dec(u64 v)
{
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        u32 digit;
        v = div64(v, 10, &digit);
        buf[--i] = (char)('0' + digit);
    } while (v);
    put_str(buf + i);
}
static void put_hex(u32 v)
{
    put_str("0x");
    for (int shift = 28; shift >= 0; shift -= 4) put_char("0123456789abcdef"[(v >> shift) & 15]);
}

/* ---- command line ---- */

/* The decimal value of "key=" in the command line, or `fallback`. */
static u32 arg(const char *line, const char *key, u32 fallback)
{
    for (const char *p = line; *p; p++) {
        if (p != line && p[-1] != ' ') continue;
        const char *k = key, *q = p;
        while (*k && *q == *k) { k++; q++; }
        if (*k || *q != '=') continue;
        u32 v = 0;
        for (q++; *q >= '0' && *q <= '9'; q++) v = v * 10 + (u32)(*q - '0');
        return v;
    }
    return fallback;
}

/* ---- time ---- */

/* TSC ticks while PIT channel 2 counts `pit_ticks` down in mode 0 (its output rises at zero). */
static u64 tsc_ticks_over(u16 pit_ticks)
{
    outb(0x61, (u8)((inb(0x61) & ~0x02) | 0x01)); /* channel 2 gate on, speaker off */
    outb(0x43, 0xB0);                              /* channel 2, low then high byte, mode 0 */
    outb(0x42, (u8)pit_ticks);
    outb(0x42, (u8)(pit_ticks >> 8));
    u64 start = rdtsc();
    while (!(inb(0x61) & 0x20)) { }
    return rdtsc() - start;
}

/* TSC ticks per second, measured against the PIT over 50 ms, three times; the median resists
 * a run stretched or cut short by the host descheduling the vCPU at an edge. Under TCG both
 * clocks follow the host's, and both stand still while QEMU is stopped. */
static u32 calibrate_tsc_hz(void)
{
    u64 runs[CALIBRATION_RUNS];
    for (int i = 0; i < CALIBRATION_RUNS; i++) runs[i] = tsc_ticks_over(PIT_HZ / 20) * 20;
    for (int i = 1; i < CALIBRATION_RUNS; i++)
        for (int j = i; j > 0 && runs[j] < runs[j - 1]; j--) { u64 t = runs[j]; runs[j] = runs[j - 1]; runs[j - 1] = t; }
    u64 median = runs[CALIBRATION_RUNS / 2];
    return median > 0xFFFFFFFFu ? 0xFFFFFFFFu : (u32)median;
}

/* ---- pages ---- */

static u32 *table;   /* version of each page */
static u8 *pages;    /* first page of the region */
static u32 page_count;
static u64 writes, checked, passes, errors;

static u32 xorshift(u32 x) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x; }

/* A bijection of 32-bit words (murmur3's finalizer). */
static u32 mix(u32 x) { x ^= x >> 16; x *= 0x85EBCA6Bu; x ^= x >> 13; x *= 0xC2B2AE35u; x ^= x >> 16; return x; }

/* The stream's seed; different versions of one page never share a seed (mix is a bijection). */
static u32 seed(u32 page, u32 version)
{
    u32 s = mix(page ^ mix(version + 0x9E3779B9u));
    return s ? s : 0x6D2B79F5u; /* xorshift must not start at 0 */
}

static u32 *page_words(u32 page) { return (u32 *)(pages + page * PAGE_SIZE); }

static void fill(u32 page, u32 version)
{
    u32 *w = page_words(page), x = seed(page, version);
    w[0] = page;
    w[1] = version;
    for (u32 i = 2; i < PAGE_WORDS; i++) { x = xorshift(x); w[i] = x; }
    table[page] = version;
}

/* The first word of `page` that differs from what its version says, or PAGE_WORDS. */
static u32 first_wrong_word(u32 page, u32 *want)
{
    const u32 *w = page_words(page);
    u32 version = table[page], x = seed(page, version);
    if (w[0] != page) { *want = page; return 0; }
    if (w[1] != version) { *want = version; return 1; }
    for (u32 i = 2; i < PAGE_WORDS; i++) {
        x = xorshift(x);
        if (w[i] != x) { *want = x; return i; }
    }
    return PAGE_WORDS;
}

static void check(u32 page)
{
    u32 want, word = first_wrong_word(page, &want);
    checked++;
    if (word == PAGE_WORDS) return;
    errors++;
    put_str("check failed: page="); put_dec(page);
    put_str(" version="); put_dec(table[page]);
    put_str(" word="); put_dec(word);
    put_str(" want="); put_hex(want);
    put_str(" got="); put_hex(page_words(page)[word]);
    put_str("\n");
    fill(page, table[page] + 1);
}

static void report(u64 seconds)
{
    put_str("t="); put_dec(seconds);
    put_str(" writes="); put_dec(writes);
    put_str(" checked="); put_dec(checked);
    put_str(" passes="); put_dec(passes);
    put_str(" errors="); put_dec(errors);
    put_str("\n");
}

void kmain(u32 magic, const u32 *info)
{
    /* Read the command line and memory size first: the region overwrites the boot information. */
    const char *line = (magic == MB_BOOT_MAGIC && (info[0] & 4)) ? (const char *)info[4] : "";
    u32 rate = arg(line, "rate", DEFAULT_RATE), mib = arg(line, "mib", 0);
    u32 ram_top = (magic == MB_BOOT_MAGIC && (info[0] & 1)) ? 0x100000u + info[2] * 1024u : 0;
    if (ram_top <= TABLE_BASE + 2 * PAGE_SIZE) {
        put_str("guest: no memory size from the loader, or too little memory\n");
        return;
    }

    page_count = (ram_top - TABLE_BASE) / (PAGE_SIZE + 4);
    if (mib && mib * 256u < page_count) page_count = mib * 256u;
    table = (u32 *)TABLE_BASE;
    pages = (u8 *)((TABLE_BASE + page_count * 4 + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1));
    for (u32 p = 0; p < page_count; p++) fill(p, 0);

    u32 tsc_hz = calibrate_tsc_hz();
    /* The leading newline ends the firmware's last line of text. */
    put_str("\nguest: running pages="); put_dec(page_count);
    put_str(" first="); put_hex((u32)pages);
    put_str(" table="); put_hex((u32)table);
    put_str(" rate="); put_dec(rate);
    put_str(" tsc_hz="); put_dec(tsc_hz);
    put_str("\n");

    /* Writes are due every ticks_per_write; the time between them goes to checking pages in
     * order. After a stall of over a second the schedule restarts from now rather than
     * catching up in a burst. */
    u64 ticks_per_write = rate ? div64(tsc_hz, rate, 0) : 0;
    u64 start = rdtsc(), now = start, due = start, next_report = start + tsc_hz;
    u32 random = 0x2545F491u, cursor = 0;
    for (;;) {
        random = xorshift(random);
        u32 page = random % page_count;
        fill(page, table[page] + 1);
        writes++;
        due += ticks_per_write;
        do {
            check(cursor);
            if (++cursor == page_count) { cursor = 0; passes++; }
            now = rdtsc();
            if (now >= next_report) {
                u64 seconds = div64(now - start, tsc_hz, 0);
                report(seconds);
                next_report = start + (seconds + 1) * tsc_hz;
            }
        } while (now < due);
        if (now > due + tsc_hz) due = now;
    }
}
