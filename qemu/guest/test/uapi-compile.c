// SPDX-License-Identifier: MIT
/*
 * Built (not run) by scripts/build-guest-image: the uapi header must compile
 * after libc headers that pull in <linux/types.h> themselves, as any user
 * space program includes them.
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <stdint.h>
#include "virtio_pvz_uapi.h"

unsigned long pvz_uapi_sizes(void);

unsigned long pvz_uapi_sizes(void)
{
	struct statx sx;

	return sizeof(struct pvz_config) + sizeof(struct pvz_raw) + sizeof(struct pvz_fw_heap) +
	       sizeof(sx.stx_size) + PVZ_IOC_MAP_FW_HEAP;
}
