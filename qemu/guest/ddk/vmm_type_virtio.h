/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * What vmm_type_virtio.c offers a DDK system layer besides the connection
 * table: the GPU interrupt of a virtio-pvz guest is the eventq notification,
 * not an interrupt line, so the platform's SysInstallDeviceLISR() calls
 * VMMVirtioInstallLISR() instead of request_irq() (docs/ddk-integration.md).
 */
#ifndef VMM_TYPE_VIRTIO_H
#define VMM_TYPE_VIRTIO_H

#include "img_types.h"
#include "pvrsrv_error.h"
#include "syscommon.h"

struct virtio_pvz;

/*
 * Deliver every virtio-pvz event (firmware and VM manager) to pfnLISR(pvData).
 * pfnLISR runs in interrupt context and must not sleep, like any LISR; its
 * return value is not used (the event was the device's). One LISR at a time:
 * PVRSRV_ERROR_RESOURCE_UNAVAILABLE if one is installed already. Claims the
 * device if no PVZ call has yet (waiting at most vmm_virtio_wait_ms).
 */
PVRSRV_ERROR VMMVirtioInstallLISR(PFN_LISR pfnLISR, void *pvData);

/* Synchronous: once it returns the LISR is not running and will not run. */
void VMMVirtioUninstallLISR(void);

/*
 * The claimed device, for a system layer that reads or writes the register
 * bank (virtio_pvz_read_reg()/virtio_pvz_write_reg(), process context only);
 * NULL before the first PVZ call or LISR installation and after
 * VMMDestroyPvzConnection(). Not for PVZ calls: those go through the table.
 */
struct virtio_pvz *VMMVirtioDevice(void);

#endif
