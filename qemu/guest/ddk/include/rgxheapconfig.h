/* SPDX-License-Identifier: MIT */
/*
 * Stand-in for the DDK's rgxheapconfig.h as far as the VMM type needs it:
 * the firmware raw heap size, 1 << RGX_FW_HEAP_SHIFT (build option, default
 * 25 = 32 MiB; 22..25 in 1.10 to 23.2). The host must be configured with the
 * same size (vhost-user-pvz --fw-heap-size).
 */
#ifndef PVZ_STANDIN_RGXHEAPCONFIG_H
#define PVZ_STANDIN_RGXHEAPCONFIG_H

#include "img_types.h"

#ifndef RGX_FW_HEAP_SHIFT
#define RGX_FW_HEAP_SHIFT 25
#endif
#if RGX_FW_HEAP_SHIFT < 22 || RGX_FW_HEAP_SHIFT > 25
#error "RGX_FW_HEAP_SHIFT must be 22..25 (4..32 MiB), as in the DDK"
#endif
#define RGX_FIRMWARE_HEAP_SHIFT RGX_FW_HEAP_SHIFT
#define RGX_FIRMWARE_RAW_HEAP_SIZE ((IMG_UINT32)1 << RGX_FIRMWARE_HEAP_SHIFT)

#endif
