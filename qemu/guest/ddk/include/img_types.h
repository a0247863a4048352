/* SPDX-License-Identifier: MIT */
/* Stand-in for the DDK's include/img_types.h (kernel build). */
#ifndef PVZ_STANDIN_IMG_TYPES_H
#define PVZ_STANDIN_IMG_TYPES_H

#include <linux/types.h>
#include "pvrversion.h"

typedef uint8_t IMG_UINT8;
typedef uint16_t IMG_UINT16;
typedef uint32_t IMG_UINT32;
typedef uint64_t IMG_UINT64;
typedef int32_t IMG_INT32;
typedef int64_t IMG_INT64;
typedef unsigned int IMG_UINT;
typedef int IMG_INT;
typedef char IMG_CHAR;
typedef void *IMG_HANDLE;
typedef IMG_UINT32 IMG_PID;

/* An enum up to 1.15, C bool from 1.18. */
#if PVZ_TEST_DDK < 118
typedef enum tag_img_bool { IMG_FALSE = 0, IMG_TRUE = 1, IMG_FORCE_ALIGN = 0x7FFFFFFF } IMG_BOOL;
#else
typedef bool IMG_BOOL;
#define IMG_FALSE false
#define IMG_TRUE true
#endif

typedef struct { IMG_UINT64 uiAddr; } IMG_DEV_PHYADDR;
typedef struct { phys_addr_t uiAddr; } IMG_CPU_PHYADDR;

#endif
