// SPDX-License-Identifier: GPL-2.0
/*
 * The firmware heap belongs to the driver: it asks the host for the size,
 * allocates it, and MAPs and UNMAPs it with its own address. User space never
 * names a physical address to the device. The pages go back to the page
 * allocator only when no process maps them and the device is known not to
 * map them: config space is the authority on the latter.
 *
 * Also here: pvz_device_cleanup(), what probe, remove, shutdown and reset
 * recovery send so that the device holds nothing of this guest afterwards.
 */
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/string.h>
#include <asm/unaligned.h>
#include "virtio_pvz.h"

static bool pvz_overlaps(u64 a, u64 alen, u64 b, u64 blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

/* Caller holds heap_lock. */
static void pvz_heap_release(struct pvz_dev *p)
{
	if (p->heap.pages && !p->heap_mapped && !atomic_read(&p->heap_user_maps))
		pvz_heap_free(&p->heap);
}

/* Config space shows a mapping over the driver's heap. Caller holds heap_lock. */
static bool pvz_cfg_maps_heap(const struct pvz_dev *p, const struct pvz_config *c)
{
	return p->heap.pages && (c->status & PVZ_STATUS_FW_HEAP_MAPPED) &&
	       pvz_overlaps(c->fw_heap_ipa, c->fw_heap_size, p->heap.ipa, p->heap.size);
}

/*
 * Whether the device maps anything over the driver's heap, from config
 * space. A config read while the back-end is away (killed, restarting)
 * returns the front-end's last copy (QEMU keeps the last config it read), so
 * a read made just after an answer may predate it. A call the device answers
 * proves a back-end is connected and has served everything queued before
 * it, so the read after that call is the device's own: an answer equal to
 * `confirm` is read again after one (READ_REG of CORE_ID, its answer
 * unused). The other answer is taken as read, so the usual case costs no
 * call. The call is killable and ends when remove or a reset begins; its
 * error is returned. Caller holds dev_sem (read) and heap_lock.
 */
static int pvz_device_maps_heap(struct pvz_dev *p, bool confirm, bool *maps, struct pvz_config *c)
{
	struct pvz_call_hdr h = {};
	u8 in[4], out[4];
	int err = pvz_refresh_config(p, c);

	if (err)
		return err;
	*maps = pvz_cfg_maps_heap(p, c);
	if (*maps != confirm)
		return 0;
	put_unaligned_le32(0 /* CORE_ID */, in);
	err = pvz_hypercall(p, &h, PVZ_FN_READ_REG, in, 4, out, 4, PVZ_CALL_USER);
	if (!err)
		err = pvz_refresh_config(p, c);
	if (!err)
		*maps = pvz_cfg_maps_heap(p, c);
	return err;
}

/* Caller holds dev_sem (read) and heap_lock. */
static int pvz_fw_heap_policy(struct pvz_dev *p, struct pvz_call_hdr *h, u64 *size)
{
	u8 in[4], out[16];
	int err;

	put_unaligned_le32(PVZ_HEAP_FW_LOCAL, in);
	err = pvz_hypercall(p, h, PVZ_FN_GET_DEV_PHYS_HEAP_ORIGIN, in, 4, out, 4, PVZ_CALL_USER);
	if (err || h->status != PVZ_OK)
		return err;
	if (get_unaligned_le32(out) != PVZ_ORIGIN_GUEST) {
		/* Host origin: CREATE_DEV_PHYS_HEAPS allocates it. */
		h->status = PVZ_INVALID_PVZ_CONFIG;
		return 0;
	}
	err = pvz_hypercall(p, h, PVZ_FN_GET_DEV_PHYS_HEAP_ADDR_SIZE, in, 4, out, 16, PVZ_CALL_USER);
	if (err || h->status != PVZ_OK)
		return err;
	*size = get_unaligned_le64(out);
	if (*size < PVZ_MIN_FW_HEAP || *size > PVZ_MAX_FW_HEAP || (*size & (PAGE_SIZE - 1))) {
		atomic64_inc(&p->call_protocol_errors);
		pvz_err_rl(p, "GET_DEV_PHYS_HEAP_ADDR_SIZE(FW_LOCAL): size %#llx, expected a multiple of 4 KiB in %#llx..%#llx\n",
			   *size, PVZ_MIN_FW_HEAP, PVZ_MAX_FW_HEAP);
		return -EPROTO;
	}
	return 0;
}

/* PVZ_IOC_MAP_FW_HEAP. Caller holds dev_sem (read). */
int pvz_fw_heap_map(struct pvz_dev *p, struct pvz_fw_heap *a)
{
	u64 size = 0;
	u8 in[16];
	int err;

	if (mutex_lock_killable(&p->heap_lock))
		return -EINTR;
	if (p->kclient) {
		err = -EBUSY;
		goto out;
	}
	if (p->heap_mapped) {
		err = -EEXIST;
		goto out;
	}
	err = pvz_fw_heap_policy(p, &a->hdr, &size);
	if (err || a->hdr.status != PVZ_OK)
		goto out;
	if (p->heap.pages && p->heap.size != size) {
		/* The policy changed since: a heap of the old size is no use. */
		if (atomic_read(&p->heap_user_maps)) {
			err = -EBUSY;
			goto out;
		}
		pvz_heap_free(&p->heap);
	}
	if (!p->heap.pages) {
		err = pvz_heap_alloc(&p->heap, size);
		if (err)
			goto out;
	} else {
		pvz_heap_zero(&p->heap);
	}
	put_unaligned_le64(p->heap.size, in);
	put_unaligned_le64(p->heap.ipa, in + 8);
	err = pvz_hypercall(p, &a->hdr, PVZ_FN_MAP_DEV_PHYS_HEAP, in, 16, NULL, 0, PVZ_CALL_USER);
	if (err) {
		/* The device may have taken the MAP before the call failed:
		 * keep the pages until an UNMAP or config space says otherwise. */
		p->heap_mapped = true;
		goto out;
	}
	if (a->hdr.status == PVZ_OK) {
		p->heap_mapped = true;
		a->size = p->heap.size;
		a->ipa = p->heap.ipa;
		pvz_dbg(p, "firmware heap %#llx+%#llx mapped\n", p->heap.ipa, p->heap.size);
	} else {
		struct pvz_config c;
		bool maps = true;

		/* Refused, but the device may map these very pages all the
		 * same (ALREADY_EXISTS for a mapping made behind the driver's
		 * back or that a stale config copy hid from it): config space
		 * decides, as after UNMAP. "Not mapped" is read after a call
		 * the device answered, so a stale copy cannot free them. */
		err = pvz_device_maps_heap(p, false, &maps, &c);
		if (err || maps) {
			p->heap_mapped = true;
			if (maps)
				pvz_warn_rl(p, "MAP answered %u but config space maps %#llx+%#llx over the heap %#llx+%#llx: keeping it\n",
					    a->hdr.status, c.fw_heap_ipa, c.fw_heap_size, p->heap.ipa, p->heap.size);
			goto out;
		}
		pvz_heap_release(p);
	}
out:
	mutex_unlock(&p->heap_lock);
	return err;
}

/* PVZ_IOC_UNMAP_FW_HEAP. Caller holds dev_sem (read). */
int pvz_fw_heap_unmap(struct pvz_dev *p, struct pvz_call_hdr *h)
{
	struct pvz_config c;
	bool maps;
	int err;

	if (mutex_lock_killable(&p->heap_lock))
		return -EINTR;
	if (p->kclient) {
		err = -EBUSY;   /* the heap mapped is the in-kernel client's */
		goto out;
	}
	if (p->heap.pages && atomic_read(&p->heap_user_maps)) {
		err = -EBUSY;   /* a process still writes the ring */
		goto out;
	}
	err = pvz_hypercall(p, h, PVZ_FN_UNMAP_DEV_PHYS_HEAP, NULL, 0, NULL, 0, PVZ_CALL_USER);
	if (err || (h->status != PVZ_OK && h->status != PVZ_NOT_FOUND))
		goto out;
	/* UNMAP answered; free only what config space shows unmapped. A
	 * mapping is read again after a call the device answers: the back-end
	 * may have died right after answering, and the copy read meanwhile is
	 * the front-end's last one, from before the UNMAP. */
	err = pvz_device_maps_heap(p, true, &maps, &c);
	if (err) {
		p->heap_mapped = true;
		goto out;
	}
	if (maps) {
		pvz_err_rl(p, "UNMAP answered %u but config space still maps %#llx+%#llx over the heap\n",
			   h->status, c.fw_heap_ipa, c.fw_heap_size);
		p->heap_mapped = true;
		err = -EBUSY;
		goto out;
	}
	p->heap_mapped = false;
	pvz_heap_release(p);
out:
	mutex_unlock(&p->heap_lock);
	return err;
}

/* A config change seen (cfg_work, also after a call timed out): an
 * OnVmOffline or a reset device unmaps the heap without a call from us, and
 * (debug RAW) a mapping over the heap may appear without one. The heap is
 * taken for unmapped only from a read after a call the device answered (a
 * timeout's re-read is the front-end's last copy while the back-end is
 * away); that call timing out schedules this work again, so while no
 * back-end answers it looks once per call timeout. Caller holds dev_sem. */
void pvz_fw_heap_config_seen(struct pvz_dev *p)
{
	struct pvz_config c;
	bool maps = false;
	int err;

	mutex_lock(&p->heap_lock);
	if (p->heap_mapped && p->heap.pages) {
		err = pvz_device_maps_heap(p, false, &maps, &c);
	} else {
		err = pvz_refresh_config(p, &c);
		maps = pvz_cfg_maps_heap(p, &c);
	}
	if (!err && p->heap.pages) {
		if (maps != p->heap_mapped)
			pvz_dbg(p, "config space shows the firmware heap %s\n", maps ? "mapped" : "unmapped");
		p->heap_mapped = maps;
	}
	mutex_unlock(&p->heap_lock);
}

static bool pvz_cleanup_call(struct pvz_dev *p, u32 fn, const char *why)
{
	struct pvz_call_hdr h = {};
	int err = pvz_hypercall(p, &h, fn, NULL, 0, NULL, 0, PVZ_CALL_CLEANUP);

	if (!err && (h.status == PVZ_OK || h.status == PVZ_NOT_FOUND || h.status == PVZ_VM_OFFLINE ||
		     h.status == PVZ_NOT_IMPLEMENTED))
		return true;
	atomic_inc(&p->cleanup_failures);
	pvz_warn(p, "%s: function %u failed (error %d, status %u): the device may keep this guest's state\n",
		 why, fn, err, err ? 0 : h.status);
	return false;
}

/*
 * Leave the device holding nothing of this guest: the firmware heap mapping
 * (whoever made it), the host heaps, the device config. Used by probe (a
 * previous driver or kernel may have left them), remove, shutdown and after a
 * reset. Stops at the first failure: a device that does not answer would
 * only make every further call wait out its timeout. Caller holds dev_sem
 * for writing (or owns p alone, at probe).
 */
int pvz_device_cleanup(struct pvz_dev *p, const char *why)
{
	bool host_heaps = virtio_has_feature(p->vdev, VIRTIO_PVZ_F_HOST_HEAPS);
	struct pvz_config c;
	int err;

	mutex_lock(&p->heap_lock);
	err = pvz_refresh_config(p, &c);
	if (!err && (c.status & PVZ_STATUS_FW_HEAP_MAPPED)) {
		pvz_info(p, "%s: the device maps %#llx+%#llx as firmware heap: unmapping\n", why,
			 c.fw_heap_ipa, c.fw_heap_size);
		if (!pvz_cleanup_call(p, PVZ_FN_UNMAP_DEV_PHYS_HEAP, why))
			err = -EIO;
	}
	if (!err) {
		struct pvz_config now;

		if (!pvz_refresh_config(p, &now) && !(now.status & PVZ_STATUS_FW_HEAP_MAPPED))
			p->heap_mapped = false;
	}
	mutex_unlock(&p->heap_lock);
	/* Config space does not show host heaps: destroy them whether or not
	 * they exist (NOT_FOUND counts as done). */
	if (!err && host_heaps && !pvz_cleanup_call(p, PVZ_FN_DESTROY_DEV_PHYS_HEAPS, why))
		err = -EIO;
	if (!err && (c.status & PVZ_STATUS_DEV_CONFIG) && !pvz_cleanup_call(p, PVZ_FN_DESTROY_DEV_CONFIG, why))
		err = -EIO;
	/* The copy an in-kernel client reads after remove: what is left. */
	if (!err)
		pvz_refresh_config(p, NULL);
	if (err && err != -EIO)
		atomic_inc(&p->cleanup_failures);
	return err;
}
