// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/pvz: ioctls, read()/poll() of events, mmap() of the firmware heap and
 * of the register bank mirror.
 *
 * Privileges: the node is 0600. Ioctls that change the device need
 * CAP_SYS_ADMIN at the time of the call (so a descriptor handed to a less
 * privileged process can still read, not change); reading config, READ_REG,
 * the heap queries, events and the read-only register mapping do not.
 * A file outlives its device: after remove every entry point answers
 * -ENODEV (poll: EPOLLHUP) and nothing touches the freed virtio device.
 * While an in-kernel client has claimed the device, the ioctls that change
 * it answer -EBUSY.
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/ioport.h>
#include <linux/mm.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/virtio.h>
#include <asm/unaligned.h>
#include "virtio_pvz.h"

static int pvz_open(struct inode *inode, struct file *f)
{
	struct pvz_dev *p = container_of(f->private_data, struct pvz_dev, misc);

	/* misc_open() holds misc_mtx, which misc_deregister() takes too: p is
	 * alive here and remove has not dropped its reference yet. */
	if (READ_ONCE(p->removed))
		return -ENODEV;
	kref_get(&p->ref);
	f->private_data = p;
	return nonseekable_open(inode, f);
}

static int pvz_release_file(struct inode *inode, struct file *f)
{
	pvz_put(f->private_data);
	return 0;
}

static ssize_t pvz_read(struct file *f, char __user *buf, size_t len, loff_t *off)
{
	struct pvz_dev *p = f->private_data;
	struct pvz_event ev[16];
	unsigned int n = 0, want;
	unsigned long flags;
	int err;

	if (len < sizeof(struct pvz_event))
		return -EINVAL;
	want = min_t(size_t, len / sizeof(struct pvz_event), ARRAY_SIZE(ev));
	for (;;) {
		spin_lock_irqsave(&p->ev_lock, flags);
		while (n < want && p->fifo_count) {
			ev[n++] = p->fifo[p->fifo_head];
			p->fifo_head = (p->fifo_head + 1) % PVZ_EVENT_FIFO;
			p->fifo_count--;
		}
		spin_unlock_irqrestore(&p->ev_lock, flags);
		if (n)
			break;
		if (READ_ONCE(p->removed))
			return -ENODEV;
		if (f->f_flags & O_NONBLOCK)
			return -EAGAIN;
		err = wait_event_interruptible(p->ev_wait, READ_ONCE(p->fifo_count) || READ_ONCE(p->removed));
		if (err)
			return err;
	}
	if (copy_to_user(buf, ev, n * sizeof(ev[0])))
		return -EFAULT;
	return n * sizeof(ev[0]);
}

static __poll_t pvz_poll(struct file *f, poll_table *wait)
{
	struct pvz_dev *p = f->private_data;
	__poll_t mask = 0;

	poll_wait(f, &p->ev_wait, wait);
	if (READ_ONCE(p->fifo_count))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (READ_ONCE(p->removed))
		mask |= EPOLLHUP | EPOLLERR;
	return mask;
}

/* ---- mmap ---- */

/*
 * The register bank's IPA comes from the host. User space may map it only
 * if it is memory the kernel reserved and does not own: never RAM the page
 * allocator hands out. x86: wholly inside an e820 reservation (memmap=$);
 * elsewhere (a no-map reserved-memory node is "reserved" without that
 * descriptor on arm64): every page has a struct page marked reserved.
 */
static bool pvz_reserved_range(u64 start, u64 len)
{
	unsigned long pfn;

	if (region_intersects(start, len, IORESOURCE_SYSTEM_RAM, IORES_DESC_NONE) != REGION_DISJOINT)
		return false;
	if (region_intersects(start, len, IORESOURCE_MEM, IORES_DESC_RESERVED) == REGION_INTERSECTS)
		return true;
	for (pfn = PHYS_PFN(start); pfn < PHYS_PFN(start + len); pfn++)
		if (!pfn_valid(pfn) || !PageReserved(pfn_to_page(pfn)))
			return false;
	return true;
}

/* A split would leave remap_pfn_range()'s memtype reservation (x86 PAT)
 * covering pieces it was not made for, and the heap's user count wrong. */
static int pvz_vma_may_split(struct vm_area_struct *vma, unsigned long addr)
{
	return -EINVAL;
}

static void pvz_heap_vma_open(struct vm_area_struct *vma)
{
	struct pvz_dev *p = vma->vm_private_data;

	/* mremap() moving the whole mapping: count the new one */
	kref_get(&p->ref);
	atomic_inc(&p->heap_user_maps);
}

static void pvz_heap_vma_close(struct vm_area_struct *vma)
{
	struct pvz_dev *p = vma->vm_private_data;

	atomic_dec(&p->heap_user_maps);
	pvz_put(p);
}

static void pvz_regs_vma_open(struct vm_area_struct *vma)
{
	kref_get(&((struct pvz_dev *)vma->vm_private_data)->ref);
}

static void pvz_regs_vma_close(struct vm_area_struct *vma)
{
	pvz_put(vma->vm_private_data);
}

static const struct vm_operations_struct pvz_heap_vm_ops = {
	.open = pvz_heap_vma_open,
	.close = pvz_heap_vma_close,
	.may_split = pvz_vma_may_split,
};

static const struct vm_operations_struct pvz_regs_vm_ops = {
	.open = pvz_regs_vma_open,
	.close = pvz_regs_vma_close,
	.may_split = pvz_vma_may_split,
};

static int pvz_mmap(struct file *f, struct vm_area_struct *vma)
{
	struct pvz_dev *p = f->private_data;
	unsigned long len = vma->vm_end - vma->vm_start;
	bool is_heap = vma->vm_pgoff == (PVZ_MMAP_FW_HEAP >> PAGE_SHIFT);
	struct pvz_config c;
	unsigned long pfn;
	int err;

	if (READ_ONCE(p->removed))
		return -ENODEV;
	/* MAP_PRIVATE would copy pages on write and renumber vm_pgoff. */
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (is_heap) {
		/* The command ring steers the firmware: changing the device. */
		if (!capable(CAP_SYS_ADMIN))
			return -EPERM;
		mutex_lock(&p->heap_lock);
		if (!p->heap.pages || len > p->heap.size) {
			mutex_unlock(&p->heap_lock);
			return p->heap.pages ? -EINVAL : -ENOMEM;
		}
		pfn = PHYS_PFN(p->heap.ipa);
		atomic_inc(&p->heap_user_maps);
		mutex_unlock(&p->heap_lock);
		vma->vm_ops = &pvz_heap_vm_ops;
	} else if (vma->vm_pgoff == (PVZ_MMAP_REGS >> PAGE_SHIFT)) {
		/* The bank is a mirror the daemon rewrites: guest stores would
		 * be lost, so only reads are offered. */
		if (vma->vm_flags & VM_WRITE)
			return -EPERM;
		vma->vm_flags &= ~VM_MAYWRITE;
		mutex_lock(&p->cfg_lock);
		c = p->cfg;
		mutex_unlock(&p->cfg_lock);
		if (len > c.regs_size)
			return -EINVAL;
		if (!pvz_reserved_range(c.regs_ipa, len)) {
			pvz_err_rl(p, "register bank %#llx+%#lx from the host is not reserved memory: not mapping it\n",
				   c.regs_ipa, len);
			return -EPERM;
		}
		pfn = PHYS_PFN(c.regs_ipa);
		vma->vm_ops = &pvz_regs_vm_ops;
	} else {
		return -EINVAL;
	}
	vma->vm_flags |= VM_DONTEXPAND | VM_DONTDUMP | VM_DONTCOPY;
	vma->vm_private_data = p;
	kref_get(&p->ref);
	err = remap_pfn_range(vma, vma->vm_start, pfn, len, vma->vm_page_prot);
	if (err) {
		/* close() is not called for a failed mmap */
		if (is_heap)
			atomic_dec(&p->heap_user_maps);
		pvz_put(p);
	}
	return err;
}

/* ---- ioctls ---- */

static bool pvz_ioctl_changes_device(unsigned int cmd)
{
	switch (cmd) {
	case PVZ_IOC_GET_CONFIG:
	case PVZ_IOC_GET_HEAP_ORIGIN:
	case PVZ_IOC_GET_HEAP_ADDR_SIZE:
	case PVZ_IOC_READ_REG:
		return false;
	}
	return true;
}

static long pvz_get_config(struct pvz_dev *p, struct pvz_config *c)
{
	int err = pvz_dev_enter(p, true);

	if (err)
		return err;
	/* Fresh status for the caller; a failed re-read returns the last good
	 * copy and counts an error. */
	pvz_refresh_config(p, c);
	c->features = p->vdev->features;
	pvz_dev_exit(p);
	c->config_changes = atomic_read(&p->config_changes);
	c->config_errors = atomic_read(&p->config_errors);
	c->events_received = atomic64_read(&p->events_received);
	c->events_dropped = atomic64_read(&p->events_dropped);
	c->events_malformed = atomic64_read(&p->events_malformed);
	c->events_deferred = atomic64_read(&p->events_deferred);
	c->kicks_posted = atomic64_read(&p->kicks_posted);
	c->kicks_completed = atomic64_read(&p->kicks_completed);
	c->calls = atomic64_read(&p->calls);
	c->call_timeouts = atomic64_read(&p->call_timeouts);
	c->call_protocol_errors = atomic64_read(&p->call_protocol_errors);
	c->device_resets = atomic_read(&p->device_resets);
	c->cleanup_failures = atomic_read(&p->cleanup_failures);
	c->last_request_id = READ_ONCE(p->last_request_id);
	return 0;
}

/* RAW: the bytes as given, except the request id; heap functions refused
 * unless debug_unsafe. Caller holds dev_sem. */
static long pvz_raw(struct pvz_dev *p, struct pvz_raw *a)
{
	long err;

	if (a->req_len > PVZ_RAW_MAX || !a->resp_len || a->resp_len > PVZ_RAW_MAX)
		return -EINVAL;
	if (a->req_len >= 4 && !pvz_debug_unsafe) {
		u32 fn = get_unaligned_le32(a->req);

		/* Create, destroy, map or unmap a heap: the driver owns that
		 * (and MAP would let user space name a physical address). */
		if (fn >= PVZ_FN_CREATE_DEV_PHYS_HEAPS && fn <= PVZ_FN_UNMAP_DEV_PHYS_HEAP)
			return -EPERM;
	}
	if (mutex_lock_killable(&p->call_lock))
		return -EINTR;
	err = pvz_transact(p, a->req, a->req_len, a->resp, a->resp_len, &a->used_len, &a->request_id,
			   PVZ_CALL_USER);
	mutex_unlock(&p->call_lock);
	return err;
}

/* The commands whose argument starts with struct pvz_call_hdr. */
static bool pvz_ioctl_has_hdr(unsigned int cmd)
{
	switch (cmd) {
	case PVZ_IOC_GET_CONFIG:
	case PVZ_IOC_RAW:
	case PVZ_IOC_KICK:
	case PVZ_IOC_DEBUG_BREAK_RING:
		return false;
	}
	return true;
}

/*
 * A call that failed once the device was reached still tells the caller its
 * request id: the id of the request it put on hypercallq (the device may
 * have run it, or did: a timeout, EBUSY after UNMAP was answered), so it can
 * be found in the host's ledger; 0 when no request reached the ring. Only
 * the id is written: the other outputs mean nothing on an error.
 */
static void pvz_ioctl_error_id(unsigned int cmd, void __user *up, const void *buf)
{
	if (cmd == PVZ_IOC_RAW)
		put_user(((const struct pvz_raw *)buf)->request_id, &((struct pvz_raw __user *)up)->request_id);
	else if (pvz_ioctl_has_hdr(cmd))
		put_user(((const struct pvz_call_hdr *)buf)->request_id,
			 &((struct pvz_call_hdr __user *)up)->request_id);
}

/* The argument size of each command, from its number. */
static size_t pvz_ioctl_size(unsigned int cmd)
{
	switch (cmd) {
	case PVZ_IOC_GET_CONFIG: return sizeof(struct pvz_config);
	case PVZ_IOC_CREATE_DEV_CONFIG: return sizeof(struct pvz_dev_config);
	case PVZ_IOC_DESTROY_DEV_CONFIG:
	case PVZ_IOC_DESTROY_DEV_PHYS_HEAPS:
	case PVZ_IOC_UNMAP_FW_HEAP: return sizeof(struct pvz_call_hdr);
	case PVZ_IOC_CREATE_DEV_PHYS_HEAPS: return sizeof(struct pvz_phys_heaps);
	case PVZ_IOC_GET_HEAP_ORIGIN: return sizeof(struct pvz_heap_origin);
	case PVZ_IOC_GET_HEAP_ADDR_SIZE: return sizeof(struct pvz_heap_addr_size);
	case PVZ_IOC_READ_REG:
	case PVZ_IOC_WRITE_REG: return sizeof(struct pvz_reg);
	case PVZ_IOC_RAW: return sizeof(struct pvz_raw);
	case PVZ_IOC_KICK: return sizeof(struct pvz_kick);
	case PVZ_IOC_MAP_FW_HEAP: return sizeof(struct pvz_fw_heap);
	case PVZ_IOC_DEBUG_BREAK_RING: return 0;
	}
	return SIZE_MAX;
}

static long pvz_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct pvz_dev *p = f->private_data;
	void __user *up = (void __user *)arg;
	size_t size = pvz_ioctl_size(cmd);
	union {
		struct pvz_config cfg;
		struct pvz_call_hdr hdr;
		struct pvz_dev_config dc;
		struct pvz_phys_heaps ph;
		struct pvz_heap_origin ho;
		struct pvz_heap_addr_size has;
		struct pvz_reg reg;
		struct pvz_kick kick;
		struct pvz_fw_heap fh;
	} a;
	struct pvz_raw *raw = NULL;
	void *buf = &a;
	long err;

	if (size == SIZE_MAX)
		return -ENOTTY;
	if (READ_ONCE(p->removed))
		return -ENODEV;
	if (pvz_ioctl_changes_device(cmd) && !capable(CAP_SYS_ADMIN))
		return -EPERM;
	/* An in-kernel client owns the device (the heap calls check again
	 * under heap_lock). */
	if (pvz_ioctl_changes_device(cmd) && READ_ONCE(p->kclient))
		return -EBUSY;
	if (cmd == PVZ_IOC_DEBUG_BREAK_RING && !pvz_debug_unsafe)
		return -EPERM;
	if (cmd == PVZ_IOC_RAW) {
		raw = kmalloc(sizeof(*raw), GFP_KERNEL);
		if (!raw)
			return -ENOMEM;
		buf = raw;
	}
	/* Arguments in, then the device, then results out: no user copy
	 * while dev_sem or any other lock is held. */
	if (size && (_IOC_DIR(cmd) & _IOC_WRITE) && copy_from_user(buf, up, size)) {
		err = -EFAULT;
		goto out;
	}
	if (cmd == PVZ_IOC_GET_CONFIG) {
		err = pvz_get_config(p, &a.cfg);
		goto copy_out;
	}
	/* Outputs: whatever the caller left there is not an answer. */
	if (cmd == PVZ_IOC_RAW) {
		raw->used_len = 0;
		raw->request_id = 0;
	} else if (pvz_ioctl_has_hdr(cmd)) {
		a.hdr.status = 0;
		a.hdr.request_id = 0;
	}
	err = pvz_dev_enter(p, true);
	if (err)
		goto out;
	switch (cmd) {
	case PVZ_IOC_RAW:
		err = pvz_raw(p, raw);
		break;
	case PVZ_IOC_KICK:
		err = pvz_kick(p, &a.kick);
		break;
	case PVZ_IOC_MAP_FW_HEAP:
		a.fh.size = 0;
		a.fh.ipa = 0;
		err = pvz_fw_heap_map(p, &a.fh);
		break;
	case PVZ_IOC_UNMAP_FW_HEAP:
		err = pvz_fw_heap_unmap(p, &a.hdr);
		break;
	case PVZ_IOC_DEBUG_BREAK_RING:
		err = pvz_break_ring(p);
		break;
	default:
		err = pvz_typed_call(p, cmd, buf);
		break;
	}
	pvz_dev_exit(p);
	if (err)
		pvz_ioctl_error_id(cmd, up, buf);
copy_out:
	if (!err && size && (_IOC_DIR(cmd) & _IOC_READ) && copy_to_user(up, buf, size))
		err = -EFAULT;
out:
	kfree(raw);
	return err;
}

const struct file_operations pvz_fops = {
	.owner = THIS_MODULE,
	.open = pvz_open,
	.release = pvz_release_file,
	.read = pvz_read,
	.poll = pvz_poll,
	.mmap = pvz_mmap,
	.unlocked_ioctl = pvz_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};
