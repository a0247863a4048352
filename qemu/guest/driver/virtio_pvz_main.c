// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-pvz: the guest side of the PowerVR para-virtualization (PVZ)
 * connection, over the virtio device of spec docs "virtio-pvz" version 1.
 *
 * This file: the device's lifecycle. Probe takes back whatever a previous
 * driver or kernel left in the device; remove and shutdown leave nothing
 * behind and never wait more than one short call for a device that does not
 * answer; a device that reports NEEDS_RESET is reset and re-initialised by
 * the driver itself, with open files kept. The device is treated as hostile:
 * every config value it returns is checked, and a wrong one is reported with
 * the value and the limit.
 */
#include <linux/module.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/slab.h>
#include <linux/idr.h>
#include <linux/list.h>
#include <linux/reboot.h>
#include "virtio_pvz.h"

unsigned int pvz_call_timeout_ms = 5000;
module_param_named(call_timeout_ms, pvz_call_timeout_ms, uint, 0644);
MODULE_PARM_DESC(call_timeout_ms, "hypercall timeout in ms (1..600000)");

unsigned int pvz_event_buffers = 16;
module_param_named(event_buffers, pvz_event_buffers, uint, 0444);
MODULE_PARM_DESC(event_buffers, "16-byte buffers kept posted on eventq (1..256)");

unsigned int pvz_event_budget = 16;
module_param_named(event_budget, pvz_event_budget, uint, 0644);
MODULE_PARM_DESC(event_budget, "event buffers taken per eventq interrupt; the rest go to a work item (1..256)");

bool pvz_debug_unsafe;
module_param_named(debug_unsafe, pvz_debug_unsafe, bool, 0444);
MODULE_PARM_DESC(debug_unsafe, "test images only: RAW may send heap functions 3..6 (user-named addresses) and DEBUG_BREAK_RING may corrupt hypercallq");

static unsigned int virtio_id;
module_param(virtio_id, uint, 0444);
MODULE_PARM_DESC(virtio_id, "also bind this virtio device ID (besides VIRTIO_ID_PVZ)");

static DEFINE_IDA(pvz_ida);

/* Bound devices, for the reboot notifier and for in-kernel clients. */
static LIST_HEAD(pvz_devices);
static DEFINE_MUTEX(pvz_devices_lock);
/* Bumped (under the lock) and woken at every bind: virtio_pvz_get() waits on it. */
static DECLARE_WAIT_QUEUE_HEAD(pvz_bound_wq);
static unsigned int pvz_bound_generation;

/* Device config space, little-endian on the wire (spec section 4). */
struct virtio_pvz_config_le {
	__le32 magic, version, osid, status;
	__le64 bvnc;
	__le32 irq, priority;
	__le64 regs_ipa;
	__le32 regs_size, max_osids;
	__le64 fw_heap_ipa, fw_heap_size;
};
static_assert(sizeof(struct virtio_pvz_config_le) == VIRTIO_PVZ_CONFIG_SIZE);

static void pvz_release(struct kref *ref)
{
	struct pvz_dev *p = container_of(ref, struct pvz_dev, ref);

	if (p->heap.pages) {
		if (p->heap_mapped)
			/* The device may still write there: never give it back. */
			pvz_warn(p, "leaking %llu-byte firmware heap at IPA %#llx: still mapped by the device\n",
				 p->heap.size, p->heap.ipa);
		else
			pvz_heap_free(&p->heap);
	}
	kfree(p->ev_bufs);
	if (p->index >= 0)
		ida_free(&pvz_ida, p->index);
	kfree(p);
}

void pvz_put(struct pvz_dev *p)
{
	kref_put(&p->ref, pvz_release);
}

/* Everything that touches the device runs between these two. */
int pvz_dev_enter(struct pvz_dev *p, bool killable)
{
	if (killable) {
		if (down_read_killable(&p->dev_sem))
			return -EINTR;
	} else {
		down_read(&p->dev_sem);
	}
	if (!p->vdev || READ_ONCE(p->removed)) {
		up_read(&p->dev_sem);
		return -ENODEV;
	}
	return 0;
}

void pvz_dev_exit(struct pvz_dev *p)
{
	up_read(&p->dev_sem);
}

wait_queue_head_t *pvz_bound_waitq(void)
{
	return &pvz_bound_wq;
}

unsigned int pvz_bound_gen(void)
{
	return READ_ONCE(pvz_bound_generation);
}

/*
 * Claim the bound device `index` for the in-kernel client c (c->p is set,
 * with a reference). -ENOENT: no such device bound (*gen is the bind
 * generation that was looked at, for the caller's wait); -EBUSY: claimed
 * already, or user space holds the firmware heap mapped through /dev/pvz.
 */
int pvz_claim(unsigned int index, struct virtio_pvz *c, unsigned int *gen)
{
	struct pvz_dev *p, *found = NULL;
	int err = 0;

	mutex_lock(&pvz_devices_lock);
	*gen = pvz_bound_generation;
	list_for_each_entry(p, &pvz_devices, node) {
		if (p->index == (int)index) {
			found = p;
			kref_get(&p->ref);
			break;
		}
	}
	mutex_unlock(&pvz_devices_lock);
	if (!found)
		return -ENOENT;
	p = found;
	mutex_lock(&p->heap_lock);
	if (READ_ONCE(p->removed))
		err = -ENOENT;
	else if (p->kclient)
		err = -EBUSY;
	else if (p->heap_mapped) {
		pvz_warn(p, "in-kernel claim refused: /dev/%s holds the firmware heap mapped\n", p->name);
		err = -EBUSY;
	} else {
		p->kclient = c;
		c->p = p;
	}
	mutex_unlock(&p->heap_lock);
	if (err)
		pvz_put(p);
	return err;
}

/* A writer is coming: calls waiting for the device end with `err` now. */
static void pvz_abort_begin(struct pvz_dev *p, int err)
{
	WRITE_ONCE(p->abort_err, READ_ONCE(p->removed) ? -ENODEV : err);
	smp_wmb();
	atomic_inc(&p->aborting);
	wake_up_all(&p->call_wq);
	wake_up_interruptible(&p->ev_wait);
}

/* ---- config space ---- */

static u32 pvz_cfg_generation(struct virtio_device *vdev)
{
	return vdev->config->generation ? vdev->config->generation(vdev) : 0;
}

static int pvz_read_config(struct pvz_dev *p, struct pvz_config *c)
{
	struct virtio_device *vdev = p->vdev;
	struct virtio_pvz_config_le raw;
	u32 *w = (u32 *)&raw;
	unsigned int gen, i, tries = 0;

	/* 32-bit reads only: every config read is a whole GET_CONFIG round trip
	 * to the daemon, byte reads would cost 64 of them. */
	do {
		if (++tries > 16) {
			pvz_err(p, "config generation kept changing over %u reads\n", tries - 1);
			return -EIO;
		}
		gen = pvz_cfg_generation(vdev);
		for (i = 0; i < sizeof(raw) / 4; i++)
			vdev->config->get(vdev, i * 4, &w[i], 4);
	} while (gen != pvz_cfg_generation(vdev));

	memset(c, 0, sizeof(*c));
	c->magic = le32_to_cpu(raw.magic);
	c->version = le32_to_cpu(raw.version);
	c->osid = le32_to_cpu(raw.osid);
	c->status = le32_to_cpu(raw.status);
	c->bvnc = le64_to_cpu(raw.bvnc);
	c->irq = le32_to_cpu(raw.irq);
	c->priority = le32_to_cpu(raw.priority);
	c->regs_ipa = le64_to_cpu(raw.regs_ipa);
	c->regs_size = le32_to_cpu(raw.regs_size);
	c->max_osids = le32_to_cpu(raw.max_osids);
	c->fw_heap_ipa = le64_to_cpu(raw.fw_heap_ipa);
	c->fw_heap_size = le64_to_cpu(raw.fw_heap_size);

#define BAD(fmt, ...) do { pvz_err_rl(p, "config: " fmt "\n", ##__VA_ARGS__); return -EPROTO; } while (0)
	if (c->magic != VIRTIO_PVZ_MAGIC)
		BAD("magic %#x, expected %#x (\"PVZ1\")", c->magic, VIRTIO_PVZ_MAGIC);
	if (c->version != VIRTIO_PVZ_VERSION)
		BAD("version %u, this driver speaks %u", c->version, VIRTIO_PVZ_VERSION);
	if (c->max_osids < 2 || c->max_osids > PVZ_MAX_OSIDS_LIMIT)
		BAD("max_osids %u outside 2..%u", c->max_osids, PVZ_MAX_OSIDS_LIMIT);
	if (c->osid == 0 || c->osid >= c->max_osids)
		BAD("osid %u outside 1..%u (0 is the host)", c->osid, c->max_osids - 1);
	if (c->status & ~PVZ_STATUS_KNOWN_BITS)
		BAD("status %#x has bits outside %#x", c->status, PVZ_STATUS_KNOWN_BITS);
	if (c->regs_size != VIRTIO_PVZ_REGS_SIZE)
		BAD("regs_size %#x, expected %#x", c->regs_size, VIRTIO_PVZ_REGS_SIZE);
	if (!c->regs_ipa || (c->regs_ipa & (PAGE_SIZE - 1)) || c->regs_ipa + c->regs_size < c->regs_ipa)
		BAD("regs_ipa %#llx is zero, not 4 KiB aligned or wraps", c->regs_ipa);
	/* fw_heap_size is the size of the mapped heap: 0 while none is. The
	 * size the policy wants comes from GET_DEV_PHYS_HEAP_ADDR_SIZE. */
	if ((c->fw_heap_size & (PAGE_SIZE - 1)) || c->fw_heap_size > PVZ_MAX_FW_HEAP)
		BAD("fw_heap_size %#llx not 4 KiB aligned or above %#llx", c->fw_heap_size, PVZ_MAX_FW_HEAP);
	if (!!c->fw_heap_size != !!c->fw_heap_ipa)
		BAD("fw_heap_size %#llx with fw_heap_ipa %#llx: both or neither must be 0",
		    c->fw_heap_size, c->fw_heap_ipa);
	if (c->fw_heap_ipa & (PAGE_SIZE - 1))
		BAD("fw_heap_ipa %#llx not 4 KiB aligned", c->fw_heap_ipa);
	if (c->fw_heap_ipa && c->fw_heap_ipa + c->fw_heap_size < c->fw_heap_ipa)
		BAD("fw_heap_ipa %#llx + size %#llx wraps", c->fw_heap_ipa, c->fw_heap_size);
	if (!!c->fw_heap_ipa != !!(c->status & PVZ_STATUS_FW_HEAP_MAPPED))
		BAD("fw_heap_ipa %#llx disagrees with status bit2 (status %#x)", c->fw_heap_ipa, c->status);
#undef BAD
	return 0;
}

/* Re-read config and keep the copy only if it validates; *out gets the
 * validated copy. Caller holds dev_sem. */
int pvz_refresh_config(struct pvz_dev *p, struct pvz_config *out)
{
	struct pvz_config c;
	int err = pvz_read_config(p, &c);

	mutex_lock(&p->cfg_lock);
	if (!err && p->cfg.osid && c.osid != p->cfg.osid) {
		/* The VM manager owns the OSID; a change under a running
		 * driver means a different guest identity: refuse it. */
		pvz_err(p, "config: osid changed from %u to %u\n", p->cfg.osid, c.osid);
		err = -EPROTO;
	}
	if (err)
		atomic_inc(&p->config_errors);
	else
		p->cfg = c;
	if (out)
		*out = p->cfg;
	mutex_unlock(&p->cfg_lock);
	return err;
}

static void pvz_cfg_work(struct work_struct *work)
{
	struct pvz_dev *p = container_of(work, struct pvz_dev, cfg_work);
	bool needs_reset;

	if (pvz_dev_enter(p, false))
		return;
	if (atomic_read(&p->aborting)) {
		pvz_dev_exit(p);
		return;
	}
	needs_reset = p->vdev->config->get_status(p->vdev) & VIRTIO_CONFIG_S_NEEDS_RESET;
	if (!needs_reset)
		pvz_fw_heap_config_seen(p);
	pvz_dev_exit(p);
	if (needs_reset)
		schedule_work(&p->reset_work);
	wake_up_interruptible(&p->ev_wait);
}

static void pvz_config_changed(struct virtio_device *vdev)
{
	struct pvz_dev *p = vdev->priv;

	atomic_inc(&p->config_changes);
	/* Config reads are device round trips: not from interrupt context. */
	schedule_work(&p->cfg_work);
}

/* ---- virtqueues: set up at probe and after a reset, torn down at remove ---- */

static int pvz_vqs_setup(struct pvz_dev *p)
{
	static const char *const names[PVZ_NVQS] = { "hypercallq", "eventq", "kickq" };
	vq_callback_t *cbs[PVZ_NVQS] = { pvz_hvq_done, pvz_evq_done, pvz_kickq_done };
	struct virtio_device *vdev = p->vdev;
	unsigned int n;
	int err;

	err = virtio_find_vqs(vdev, PVZ_NVQS, p->vqs, cbs, names, NULL);
	if (err) {
		pvz_err(p, "cannot find the %d virtqueues: %d\n", PVZ_NVQS, err);
		return err;
	}
	n = min(clamp(pvz_event_buffers, 1u, 256u), virtqueue_get_vring_size(p->vqs[PVZ_VQ_EVENT]));
	if (n > p->n_ev_bufs) {
		struct pvz_event_le *b = kcalloc(n, sizeof(*b), GFP_KERNEL);

		if (!b) {
			vdev->config->del_vqs(vdev);
			return -ENOMEM;
		}
		kfree(p->ev_bufs);
		p->ev_bufs = b;
	}
	p->n_ev_bufs = n;
	virtio_device_ready(vdev);
	err = pvz_post_event_bufs(p);
	if (err) {
		virtio_reset_device(vdev);
		vdev->config->del_vqs(vdev);
	}
	return err;
}

static void pvz_vqs_teardown(struct pvz_dev *p)
{
	struct virtio_device *vdev = p->vdev;

	virtio_reset_device(vdev);
	/* No callback runs after the reset; the event work may still. */
	cancel_work_sync(&p->ev_work);
	pvz_vqs_reclaim(p);
	vdev->config->del_vqs(vdev);
	memset(p->vqs, 0, sizeof(p->vqs));
}

/*
 * The status steps virtio_dev_probe() takes before probe, for a device the
 * driver re-initialises itself after a reset: ACKNOWLEDGE, DRIVER, the same
 * features, FEATURES_OK.
 */
static int pvz_reinit_status(struct pvz_dev *p)
{
	struct virtio_device *vdev = p->vdev;
	int err;

	virtio_add_status(vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	virtio_add_status(vdev, VIRTIO_CONFIG_S_DRIVER);
	err = vdev->config->finalize_features(vdev);
	if (err)
		return err;
	virtio_add_status(vdev, VIRTIO_CONFIG_S_FEATURES_OK);
	if (!(vdev->config->get_status(vdev) & VIRTIO_CONFIG_S_FEATURES_OK)) {
		pvz_err(p, "device refused the features %#llx it accepted before\n", vdev->features);
		return -ENODEV;
	}
	return 0;
}

/* NEEDS_RESET: reset and re-initialise; calls in flight end with -EIO, open
 * files and mappings stay, later calls work. */
static void pvz_reset_work(struct work_struct *work)
{
	struct pvz_dev *p = container_of(work, struct pvz_dev, reset_work);
	int err;

	pvz_abort_begin(p, -EIO);
	down_write(&p->dev_sem);
	atomic_dec(&p->aborting);
	if (!p->vdev || p->removed || !p->vqs[0] ||
	    !(p->vdev->config->get_status(p->vdev) & VIRTIO_CONFIG_S_NEEDS_RESET))
		goto out;
	pvz_warn(p, "device needs reset: resetting and re-initialising it\n");
	pvz_vqs_teardown(p);
	err = pvz_reinit_status(p);
	if (!err)
		err = pvz_vqs_setup(p);
	if (err) {
		/* Calls see no queues and fail; a later rebind may do better. */
		pvz_err(p, "re-initialisation after reset failed: %d\n", err);
		virtio_add_status(p->vdev, VIRTIO_CONFIG_S_FAILED);
		WRITE_ONCE(p->removed, true);
		goto out;
	}
	atomic_inc(&p->device_resets);
	/* A device reset may or may not have released this guest's state on
	 * the host: make sure it did. */
	pvz_device_cleanup(p, "reset");
	pvz_info(p, "device re-initialised after reset %u\n", atomic_read(&p->device_resets));
out:
	up_write(&p->dev_sem);
	wake_up_interruptible(&p->ev_wait);
}

/* ---- probe / remove / shutdown ---- */

static int pvz_probe(struct virtio_device *vdev)
{
	struct pvz_dev *p;
	int err;

	if (!vdev->config->get) {
		dev_err(&vdev->dev, "transport has no config space access\n");
		return -EINVAL;
	}
	if (pvz_event_buffers < 1 || pvz_event_buffers > 256) {
		dev_err(&vdev->dev, "event_buffers=%u outside 1..256\n", pvz_event_buffers);
		return -EINVAL;
	}
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	kref_init(&p->ref);
	strscpy(p->devname, dev_name(&vdev->dev), sizeof(p->devname));
	init_rwsem(&p->dev_sem);
	p->vdev = vdev;
	vdev->priv = p;
	mutex_init(&p->call_lock);
	spin_lock_init(&p->hvq_lock);
	init_waitqueue_head(&p->call_wq);
	spin_lock_init(&p->ev_lock);
	init_waitqueue_head(&p->ev_wait);
	INIT_WORK(&p->ev_work, pvz_ev_work);
	spin_lock_init(&p->kick_lock);
	mutex_init(&p->cfg_lock);
	INIT_WORK(&p->cfg_work, pvz_cfg_work);
	INIT_WORK(&p->reset_work, pvz_reset_work);
	mutex_init(&p->heap_lock);
	atomic_set(&p->heap_user_maps, 0);
	p->index = ida_alloc(&pvz_ida, GFP_KERNEL);
	if (p->index < 0) {
		err = p->index;
		kfree(p);
		return err;
	}

	err = pvz_refresh_config(p, NULL);
	if (err)
		goto err_free;
	err = pvz_vqs_setup(p);
	if (err)
		goto err_free;
	/* A previous driver or kernel (kexec, a crash) may have left a heap
	 * mapped, heaps or a device config created: none of it is ours. */
	pvz_device_cleanup(p, "probe");

	snprintf(p->name, sizeof(p->name), p->index ? "pvz%d" : "pvz", p->index);
	p->misc.minor = MISC_DYNAMIC_MINOR;
	p->misc.name = p->name;
	p->misc.fops = &pvz_fops;
	p->misc.mode = 0600;   /* root only; device-changing ioctls need CAP_SYS_ADMIN too */
	err = misc_register(&p->misc);
	if (err)
		goto err_vqs;
	p->misc_registered = true;
	mutex_lock(&pvz_devices_lock);
	list_add(&p->node, &pvz_devices);
	pvz_bound_generation++;
	mutex_unlock(&pvz_devices_lock);
	wake_up_all(&pvz_bound_wq);

	pvz_info(p, "/dev/%s: osid %u of %u, bvnc %#llx, regs %#llx+%#x, status %#x, features %#llx\n",
		 p->name, p->cfg.osid, p->cfg.max_osids, p->cfg.bvnc, p->cfg.regs_ipa, p->cfg.regs_size,
		 p->cfg.status, vdev->features);
	return 0;

err_vqs:
	pvz_vqs_teardown(p);
err_free:
	down_write(&p->dev_sem);
	p->vdev = NULL;
	up_write(&p->dev_sem);
	/* a call timeout during the probe cleanup may have queued these */
	cancel_work_sync(&p->cfg_work);
	cancel_work_sync(&p->reset_work);
	vdev->priv = NULL;
	pvz_put(p);
	return err;
}

/* Remove and reboot: take back what the device holds, reset it, drop the
 * queues. Bounded: calls in flight end at once, and the cleanup stops at the
 * first call the device does not answer (PVZ_CLEANUP_TIMEOUT_MS). */
static void pvz_detach(struct pvz_dev *p, const char *why)
{
	WRITE_ONCE(p->removed, true);
	pvz_abort_begin(p, -ENODEV);
	down_write(&p->dev_sem);
	if (p->vdev && p->vqs[0]) {
		pvz_device_cleanup(p, why);
		pvz_vqs_teardown(p);
	}
	p->vdev = NULL;
	up_write(&p->dev_sem);
	wake_up_interruptible(&p->ev_wait);
	cancel_work_sync(&p->cfg_work);
	cancel_work_sync(&p->reset_work);
}

static void pvz_remove(struct virtio_device *vdev)
{
	struct pvz_dev *p = vdev->priv;

	mutex_lock(&pvz_devices_lock);
	list_del(&p->node);
	mutex_unlock(&pvz_devices_lock);
	if (p->misc_registered)
		misc_deregister(&p->misc);
	p->misc_registered = false;
	/* The name is free again: a rebind gets /dev/pvz back even while
	 * files of this device stay open. */
	ida_free(&pvz_ida, p->index);
	p->index = -1;
	pvz_detach(p, "remove");
	vdev->priv = NULL;
	pvz_put(p);
}

/*
 * Reboot, kexec, poweroff: the next kernel (or the host after a reboot) must
 * find no heap, mapping or device config of this one. 6.1's virtio bus has
 * its own .shutdown that only breaks and resets the device (a driver's
 * shutdown is never called), so this runs from the reboot notifier, before
 * device_shutdown(), while the device still answers.
 */
static int pvz_reboot_notify(struct notifier_block *nb, unsigned long action, void *data)
{
	struct pvz_dev *p;

	mutex_lock(&pvz_devices_lock);
	list_for_each_entry(p, &pvz_devices, node)
		pvz_detach(p, "shutdown");
	mutex_unlock(&pvz_devices_lock);
	return NOTIFY_DONE;
}

static struct notifier_block pvz_reboot_nb = {
	.notifier_call = pvz_reboot_notify,
};

static const unsigned int pvz_features[] = {
	VIRTIO_PVZ_F_HOST_HEAPS,
	VIRTIO_PVZ_F_FIRMWARE,
};

/* The module alias covers VIRTIO_ID_PVZ; the driver's own table may carry
 * one more ID from the virtio_id parameter (filled in at load). */
static const struct virtio_device_id pvz_alias_table[] = {
	{ VIRTIO_ID_PVZ, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, pvz_alias_table);

static struct virtio_device_id pvz_id_table[] = {
	{ VIRTIO_ID_PVZ, VIRTIO_DEV_ANY_ID },
	{ 0, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

static struct virtio_driver pvz_driver = {
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = pvz_id_table,
	.feature_table = pvz_features,
	.feature_table_size = ARRAY_SIZE(pvz_features),
	.probe = pvz_probe,
	.remove = pvz_remove,
	.config_changed = pvz_config_changed,
};

static int __init pvz_init(void)
{
	int err;

	if (virtio_id && virtio_id != VIRTIO_ID_PVZ) {
		/* virtio-pci names a modern device 0x1040 + ID in 16 bits */
		if (virtio_id > 0xFFFF - 0x1040) {
			pr_err("virtio_pvz: virtio_id=%u above %u\n", virtio_id, 0xFFFF - 0x1040);
			return -EINVAL;
		}
		pvz_id_table[1].device = virtio_id;
		pr_info("virtio_pvz: binding virtio device IDs %u and %u\n", VIRTIO_ID_PVZ, virtio_id);
	}
	err = register_reboot_notifier(&pvz_reboot_nb);
	if (err)
		return err;
	err = register_virtio_driver(&pvz_driver);
	if (err)
		unregister_reboot_notifier(&pvz_reboot_nb);
	return err;
}

static void __exit pvz_exit(void)
{
	unregister_virtio_driver(&pvz_driver);
	unregister_reboot_notifier(&pvz_reboot_nb);
}

module_init(pvz_init);
module_exit(pvz_exit);
MODULE_DESCRIPTION("virtio-pvz: PowerVR para-virtualization guest connection");
MODULE_LICENSE("GPL");
