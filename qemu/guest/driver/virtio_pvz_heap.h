/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VIRTIO_PVZ_HEAP_H
#define VIRTIO_PVZ_HEAP_H
#include <linux/types.h>

struct page;

/* A physically contiguous, zeroed run of guest RAM (an IPA range). */
struct pvz_heap {
	struct page *pages;
	u64 size;
	u64 ipa;
};

int pvz_heap_alloc(struct pvz_heap *h, u64 size);
void pvz_heap_free(struct pvz_heap *h);
void pvz_heap_zero(struct pvz_heap *h);

#endif
