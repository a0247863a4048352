// SPDX-License-Identifier: GPL-2.0
/*
 * The in-kernel API (include/virtio_pvz_kapi.h): a claimed device, the PVZ
 * calls with the DDK header's parameters, the doorbell and an event handler.
 * Every entry point goes through pvz_dev_enter(), like the ioctls, so a
 * removed device answers -ENODEV and is never touched; the handle keeps the
 * struct pvz_dev alive, not the virtio device.
 */
#include <linux/err.h>
#include <linux/module.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <asm/unaligned.h>
#include "virtio_pvz.h"

struct virtio_pvz *virtio_pvz_get(unsigned int index, unsigned int timeout_ms)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(timeout_ms);
	struct virtio_pvz *c;
	unsigned int gen;
	long left;
	int err;

	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c)
		return ERR_PTR(-ENOMEM);
	for (;;) {
		err = pvz_claim(index, c, &gen);
		if (err != -ENOENT)
			break;
		left = (long)(deadline - jiffies);
		if (left <= 0) {
			err = -ETIMEDOUT;
			break;
		}
		/* A bind after the look-up changed the generation: look again. */
		left = wait_event_interruptible_timeout(*pvz_bound_waitq(), pvz_bound_gen() != gen, left);
		if (left < 0) {
			err = -EINTR;
			break;
		}
	}
	if (err) {
		kfree(c);
		return ERR_PTR(err);
	}
	pvz_info(c->p, "claimed by an in-kernel client (/dev/%s: device-changing ioctls now EBUSY)\n",
		 c->p->name);
	return c;
}
EXPORT_SYMBOL_GPL(virtio_pvz_get);

void virtio_pvz_put(struct virtio_pvz *c)
{
	struct pvz_dev *p;

	if (IS_ERR_OR_NULL(c))
		return;
	p = c->p;
	virtio_pvz_set_event_handler(c, NULL, NULL);
	mutex_lock(&p->heap_lock);
	p->kclient = NULL;
	mutex_unlock(&p->heap_lock);
	pvz_info(p, "released by its in-kernel client\n");
	pvz_put(p);
	kfree(c);
}
EXPORT_SYMBOL_GPL(virtio_pvz_put);

int virtio_pvz_get_info(struct virtio_pvz *c, struct virtio_pvz_info *info)
{
	struct pvz_config cfg;
	struct pvz_dev *p;
	int err;

	if (IS_ERR_OR_NULL(c) || !info)
		return -EINVAL;
	p = c->p;
	memset(info, 0, sizeof(*info));
	err = pvz_dev_enter(p, true);
	if (err == -EINTR)
		return err;
	if (!err) {
		err = pvz_refresh_config(p, &cfg);
		info->features = p->vdev->features;
		pvz_dev_exit(p);
	} else {
		/* Removed: the copy remove's cleanup left. */
		mutex_lock(&p->cfg_lock);
		cfg = p->cfg;
		mutex_unlock(&p->cfg_lock);
		info->removed = true;
		err = 0;
	}
	info->osid = cfg.osid;
	info->max_osids = cfg.max_osids;
	info->status = cfg.status;
	info->irq = cfg.irq;
	info->priority = cfg.priority;
	info->regs_size = cfg.regs_size;
	info->bvnc = cfg.bvnc;
	info->regs_ipa = cfg.regs_ipa;
	info->fw_heap_ipa = cfg.fw_heap_ipa;
	info->fw_heap_size = cfg.fw_heap_size;
	info->device_resets = atomic_read(&p->device_resets);
	info->cleanup_failures = atomic_read(&p->cleanup_failures);
	return err;
}
EXPORT_SYMBOL_GPL(virtio_pvz_get_info);

/* One typed call for a client: enter, call, exit; the device's status or a
 * negative errno. */
static int pvz_kcall(struct virtio_pvz *c, unsigned int cmd, void *a)
{
	struct pvz_call_hdr *h = a;
	long err;

	if (IS_ERR_OR_NULL(c))
		return -EINVAL;
	err = pvz_dev_enter(c->p, true);
	if (err)
		return err;
	err = pvz_typed_call(c->p, cmd, a);
	pvz_dev_exit(c->p);
	return err ? (int)err : (int)h->status;
}

int virtio_pvz_create_dev_config(struct virtio_pvz *c, u32 func_id, u32 dev_id, u32 *irq,
				 u32 *regs_size, u64 *regs_pbase)
{
	struct pvz_dev_config a = { .hdr = { .func_id = func_id, .dev_id = dev_id } };
	int r;

	if (!irq || !regs_size || !regs_pbase)
		return -EINVAL;
	r = pvz_kcall(c, PVZ_IOC_CREATE_DEV_CONFIG, &a);
	if (r >= 0) {
		*irq = a.irq;
		*regs_size = a.regs_size;
		*regs_pbase = a.regs_pbase;
	}
	return r;
}
EXPORT_SYMBOL_GPL(virtio_pvz_create_dev_config);

int virtio_pvz_destroy_dev_config(struct virtio_pvz *c, u32 func_id, u32 dev_id)
{
	struct pvz_call_hdr h = { .func_id = func_id, .dev_id = dev_id };

	return pvz_kcall(c, PVZ_IOC_DESTROY_DEV_CONFIG, &h);
}
EXPORT_SYMBOL_GPL(virtio_pvz_destroy_dev_config);

int virtio_pvz_create_dev_phys_heaps(struct virtio_pvz *c, u32 func_id, u32 dev_id, u32 *type,
				     u64 *fw_size, u64 *fw_paddr, u64 *gpu_size, u64 *gpu_paddr)
{
	struct pvz_phys_heaps a = { .hdr = { .func_id = func_id, .dev_id = dev_id } };
	int r;

	if (!type || !fw_size || !fw_paddr || !gpu_size || !gpu_paddr)
		return -EINVAL;
	r = pvz_kcall(c, PVZ_IOC_CREATE_DEV_PHYS_HEAPS, &a);
	if (r >= 0) {
		*type = a.type;
		*fw_size = a.fw_size;
		*fw_paddr = a.fw_paddr;
		*gpu_size = a.gpu_size;
		*gpu_paddr = a.gpu_paddr;
	}
	return r;
}
EXPORT_SYMBOL_GPL(virtio_pvz_create_dev_phys_heaps);

int virtio_pvz_destroy_dev_phys_heaps(struct virtio_pvz *c, u32 func_id, u32 dev_id)
{
	struct pvz_call_hdr h = { .func_id = func_id, .dev_id = dev_id };

	return pvz_kcall(c, PVZ_IOC_DESTROY_DEV_PHYS_HEAPS, &h);
}
EXPORT_SYMBOL_GPL(virtio_pvz_destroy_dev_phys_heaps);

/*
 * MAP and UNMAP for a client that allocated the heap itself. Unlike
 * /dev/pvz, the caller names the address: it is kernel code, and a DDK
 * allocates its firmware heap in its own system layer.
 */
int virtio_pvz_map_dev_phys_heap(struct virtio_pvz *c, u32 func_id, u32 dev_id, u64 size, u64 paddr)
{
	struct pvz_call_hdr h = { .func_id = func_id, .dev_id = dev_id };
	u8 in[16];
	int err;

	if (IS_ERR_OR_NULL(c))
		return -EINVAL;
	put_unaligned_le64(size, in);
	put_unaligned_le64(paddr, in + 8);
	err = pvz_dev_enter(c->p, true);
	if (err)
		return err;
	err = pvz_hypercall(c->p, &h, PVZ_FN_MAP_DEV_PHYS_HEAP, in, 16, NULL, 0, PVZ_CALL_USER);
	pvz_dev_exit(c->p);
	return err ? err : (int)h.status;
}
EXPORT_SYMBOL_GPL(virtio_pvz_map_dev_phys_heap);

int virtio_pvz_unmap_dev_phys_heap(struct virtio_pvz *c, u32 func_id, u32 dev_id)
{
	struct pvz_call_hdr h = { .func_id = func_id, .dev_id = dev_id };
	int err;

	if (IS_ERR_OR_NULL(c))
		return -EINVAL;
	err = pvz_dev_enter(c->p, true);
	if (err)
		return err;
	err = pvz_hypercall(c->p, &h, PVZ_FN_UNMAP_DEV_PHYS_HEAP, NULL, 0, NULL, 0, PVZ_CALL_USER);
	pvz_dev_exit(c->p);
	return err ? err : (int)h.status;
}
EXPORT_SYMBOL_GPL(virtio_pvz_unmap_dev_phys_heap);

int virtio_pvz_get_dev_phys_heap_origin(struct virtio_pvz *c, u32 heap, u32 *origin)
{
	struct pvz_heap_origin a = { .heap = heap };
	int r;

	if (!origin)
		return -EINVAL;
	r = pvz_kcall(c, PVZ_IOC_GET_HEAP_ORIGIN, &a);
	if (r >= 0)
		*origin = a.origin;
	return r;
}
EXPORT_SYMBOL_GPL(virtio_pvz_get_dev_phys_heap_origin);

int virtio_pvz_get_dev_phys_heap_addr_size(struct virtio_pvz *c, u32 heap, u64 *size, u64 *addr)
{
	struct pvz_heap_addr_size a = { .heap = heap };
	int r;

	if (!size || !addr)
		return -EINVAL;
	r = pvz_kcall(c, PVZ_IOC_GET_HEAP_ADDR_SIZE, &a);
	if (r >= 0) {
		*size = a.size;
		*addr = a.addr;
	}
	return r;
}
EXPORT_SYMBOL_GPL(virtio_pvz_get_dev_phys_heap_addr_size);

int virtio_pvz_read_reg(struct virtio_pvz *c, u32 offset, u32 *value)
{
	struct pvz_reg a = { .offset = offset };
	int r;

	if (!value)
		return -EINVAL;
	r = pvz_kcall(c, PVZ_IOC_READ_REG, &a);
	if (r >= 0)
		*value = a.value;
	return r;
}
EXPORT_SYMBOL_GPL(virtio_pvz_read_reg);

int virtio_pvz_write_reg(struct virtio_pvz *c, u32 offset, u32 value)
{
	struct pvz_reg a = { .offset = offset, .value = value };

	return pvz_kcall(c, PVZ_IOC_WRITE_REG, &a);
}
EXPORT_SYMBOL_GPL(virtio_pvz_write_reg);

int virtio_pvz_kick(struct virtio_pvz *c, u32 write_offset)
{
	struct pvz_kick k = { .write_offset = write_offset };
	int err;

	if (IS_ERR_OR_NULL(c))
		return -EINVAL;
	err = pvz_dev_enter(c->p, true);
	if (err)
		return err;
	err = pvz_kick(c->p, &k);
	pvz_dev_exit(c->p);
	return err;
}
EXPORT_SYMBOL_GPL(virtio_pvz_kick);

int virtio_pvz_set_event_handler(struct virtio_pvz *c, virtio_pvz_event_fn fn, void *data)
{
	unsigned long flags;

	if (IS_ERR_OR_NULL(c))
		return -EINVAL;
	/* The handler runs under ev_lock: once the lock is ours, an old
	 * handler has returned and a new one sees consistent data. */
	spin_lock_irqsave(&c->p->ev_lock, flags);
	c->p->kevent_fn = fn;
	c->p->kevent_data = fn ? data : NULL;
	spin_unlock_irqrestore(&c->p->ev_lock, flags);
	return 0;
}
EXPORT_SYMBOL_GPL(virtio_pvz_set_event_handler);
