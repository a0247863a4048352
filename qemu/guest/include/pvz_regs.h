/* SPDX-License-Identifier: MIT */
/*
 * Register offsets in an OSID's 64 KiB register bank (spec section 9). The
 * authority is the project's docs/registers.md; keep these in step with it.
 */
#ifndef PVZ_REGS_H
#define PVZ_REGS_H

#define PVZ_REG_CORE_ID     0x0000
#define PVZ_REG_OSID        0x000C
#define PVZ_REG_IRQ_STATUS  0x0020
#define PVZ_REG_IRQ_ENABLE  0x0024

#endif
