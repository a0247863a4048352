/* SPDX-License-Identifier: MIT */
/* Stand-in for the DDK's include/img_defs.h. */
#ifndef PVZ_STANDIN_IMG_DEFS_H
#define PVZ_STANDIN_IMG_DEFS_H
#define PVR_UNREFERENCED_PARAMETER(param) ((void)(param))
#endif
