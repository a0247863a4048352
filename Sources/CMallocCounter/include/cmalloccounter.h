/* Benchmark helpers (linked into pvz-bench, never into the daemon): counts
 * malloc-family calls process-wide, and pins threads to one CPU. */
#ifndef CMALLOCCOUNTER_H
#define CMALLOCCOUNTER_H
#include <stdint.h>
uint64_t pvz_malloc_count(void);

/* A thread's CPU mask, opaque (cpu_set_t needs _GNU_SOURCE). */
typedef struct { unsigned char bytes[128]; } pvz_cpu_mask;
/* Pins the calling thread to the first CPU of its mask and saves the mask in
 * *saved; returns that CPU, or -1 (nothing changed). Threads it starts
 * afterwards inherit the pin. */
int pvz_bench_pin_first_cpu(pvz_cpu_mask *saved);
/* Puts a mask saved by pvz_bench_pin_first_cpu back; 0 or -1. */
int pvz_bench_unpin(const pvz_cpu_mask *saved);
#endif
