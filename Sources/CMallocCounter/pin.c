#define _GNU_SOURCE
#include <sched.h>
#include <string.h>
#include "cmalloccounter.h"

_Static_assert(sizeof(pvz_cpu_mask) == sizeof(cpu_set_t), "pvz_cpu_mask is a cpu_set_t");

int pvz_bench_pin_first_cpu(pvz_cpu_mask *saved)
{
	cpu_set_t old, one;

	if (sched_getaffinity(0, sizeof(old), &old) != 0)
		return -1;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &old))
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof(one), &one) != 0)
			return -1;
		memcpy(saved, &old, sizeof(old));
		return cpu;
	}
	return -1;
}

int pvz_bench_unpin(const pvz_cpu_mask *saved)
{
	cpu_set_t old;

	memcpy(&old, saved, sizeof(old));
	return sched_setaffinity(0, sizeof(old), &old);
}
