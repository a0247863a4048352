// SPDX-License-Identifier: GPL-2.0
/*
 * The firmware heap of the guest-origin policy: fw_heap_size bytes (32 MiB by
 * default) of physically contiguous guest RAM.
 *
 * Debian's cloud kernel has no CONFIG_CMA, so neither cma= nor a large
 * dma_alloc_coherent() is available, and the buddy allocator stops at
 * MAX_ORDER-1 (4 MiB). It does have CONFIG_CONTIG_ALLOC (through memory
 * hotplug), and alloc_contig_range() is exported: like the kernel's own
 * alloc_contig_pages(), scan every populated zone for a pageblock-aligned
 * range of online, non-reserved, non-hugetlb pages, and let
 * alloc_contig_range() migrate whatever movable pages are in it. Ranges the
 * OS reserved (memmap= carve-out, firmware, kernel image) are skipped because
 * their pages are PageReserved or offline.
 */
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/memory_hotplug.h>
#include <linux/hugetlb.h>
#include <linux/nodemask.h>
#include <linux/string.h>
#include <linux/printk.h>
#include "virtio_pvz_heap.h"

static bool pvz_range_usable(struct zone *z, unsigned long start, unsigned long n)
{
	unsigned long pfn;

	for (pfn = start; pfn < start + n; pfn++) {
		struct page *page = pfn_to_online_page(pfn);

		if (!page || page_zone(page) != z || PageReserved(page) || PageHuge(page))
			return false;
	}
	return true;
}

static unsigned long pvz_zone_try(struct zone *z, unsigned long n)
{
	unsigned long step = pageblock_nr_pages;
	unsigned long lo = ALIGN(z->zone_start_pfn, step);
	unsigned long end = zone_end_pfn(z), start;

	if (end < lo + n)
		return 0;
	/* From the top down: high guest RAM is the least likely to hold
	 * unmovable kernel allocations made during boot. */
	for (start = ALIGN_DOWN(end - n, step); start >= lo; start -= step) {
		if (pvz_range_usable(z, start, n) &&
		    !alloc_contig_range(start, start + n, MIGRATE_MOVABLE,
					GFP_KERNEL | __GFP_NOWARN))
			return start;
		if (start < lo + step)
			break;
		cond_resched();
	}
	return 0;
}

int pvz_heap_alloc(struct pvz_heap *h, u64 size)
{
	unsigned long n = size >> PAGE_SHIFT, pfn = 0;
	int nid, zi;

	if (!n || (size & ~PAGE_MASK))
		return -EINVAL;
	for_each_online_node(nid) {
		pg_data_t *pgdat = NODE_DATA(nid);

		for (zi = MAX_NR_ZONES - 1; zi >= 0 && !pfn; zi--) {
			struct zone *z = &pgdat->node_zones[zi];

			if (populated_zone(z))
				pfn = pvz_zone_try(z, n);
		}
		if (pfn)
			break;
	}
	if (!pfn) {
		pr_warn("virtio_pvz: no %llu-byte physically contiguous range of movable guest RAM is free\n",
			size);
		return -ENOMEM;
	}
	h->pages = pfn_to_page(pfn);
	h->size = size;
	h->ipa = PFN_PHYS(pfn);
	pvz_heap_zero(h);
	return 0;
}

/* Guest RAM is in the direct map on x86_64: zero it there. */
void pvz_heap_zero(struct pvz_heap *h)
{
	memset(page_address(h->pages), 0, h->size);
}

void pvz_heap_free(struct pvz_heap *h)
{
	if (!h->pages)
		return;
	free_contig_range(page_to_pfn(h->pages), h->size >> PAGE_SHIFT);
	h->pages = NULL;
	h->size = 0;
	h->ipa = 0;
}
