/* Counts malloc-family calls process-wide (benchmarks only: linked into
 * pvz-bench, never into the daemon). */
#ifndef CMALLOCCOUNTER_H
#define CMALLOCCOUNTER_H
#include <stdint.h>
uint64_t pvz_malloc_count(void);
#endif
