// SPDX-License-Identifier: GPL-2.0
/*
 * The PVZ calls with typed arguments (the /dev/pvz ioctl structs) and the
 * checks of their outputs: shared by the ioctls and the in-kernel API.
 */
#include <linux/virtio.h>
#include <asm/unaligned.h>
#include "virtio_pvz.h"

static int pvz_protocol_error(struct pvz_dev *p)
{
	atomic64_inc(&p->call_protocol_errors);
	return -EPROTO;
}

/*
 * One call whose arguments are all in the header or in `in`, named by its
 * ioctl number and taking that ioctl's struct; checks the outputs that must
 * agree with config space. Used by /dev/pvz and by in-kernel clients, so both
 * get the same validation. Caller holds dev_sem.
 */
long pvz_typed_call(struct pvz_dev *p, unsigned int cmd, void *a)
{
	struct pvz_call_hdr *h = a;
	u8 in[8], out[40];
	long err;

	switch (cmd) {
	case PVZ_IOC_CREATE_DEV_CONFIG: {
		struct pvz_dev_config *d = a;
		struct pvz_config c;

		err = pvz_hypercall(p, h, PVZ_FN_CREATE_DEV_CONFIG, NULL, 0, out, 16, PVZ_CALL_USER);
		if (err)
			return err;
		d->irq = get_unaligned_le32(out);
		d->regs_size = get_unaligned_le32(out + 4);
		d->regs_pbase = get_unaligned_le64(out + 8);
		if (h->status != PVZ_OK)
			return 0;
		mutex_lock(&p->cfg_lock);
		c = p->cfg;
		mutex_unlock(&p->cfg_lock);
		/* regs_pbase and regs_size must be what config space says: a
		 * driver maps the bank from either. */
		if (d->regs_size != c.regs_size || d->regs_pbase != c.regs_ipa || d->irq != c.irq) {
			pvz_err_rl(p, "CREATE_DEV_CONFIG: irq %u regs %#llx+%#x disagree with config irq %u regs %#llx+%#x\n",
				   d->irq, d->regs_pbase, d->regs_size, c.irq, c.regs_ipa, c.regs_size);
			return pvz_protocol_error(p);
		}
		return 0;
	}
	case PVZ_IOC_DESTROY_DEV_CONFIG:
		return pvz_hypercall(p, h, PVZ_FN_DESTROY_DEV_CONFIG, NULL, 0, NULL, 0, PVZ_CALL_USER);
	case PVZ_IOC_DESTROY_DEV_PHYS_HEAPS:
		return pvz_hypercall(p, h, PVZ_FN_DESTROY_DEV_PHYS_HEAPS, NULL, 0, NULL, 0, PVZ_CALL_USER);
	case PVZ_IOC_CREATE_DEV_PHYS_HEAPS: {
		struct pvz_phys_heaps *a2 = a;

		err = pvz_hypercall(p, h, PVZ_FN_CREATE_DEV_PHYS_HEAPS, NULL, 0, out, 40, PVZ_CALL_USER);
		if (err)
			return err;
		a2->type = get_unaligned_le32(out);
		a2->pad = get_unaligned_le32(out + 4);
		a2->fw_size = get_unaligned_le64(out + 8);
		a2->fw_paddr = get_unaligned_le64(out + 16);
		a2->gpu_size = get_unaligned_le64(out + 24);
		a2->gpu_paddr = get_unaligned_le64(out + 32);
		if (h->status != PVZ_OK)
			return 0;
		if (a2->type < PVZ_HEAP_TYPE_UMA || a2->type > PVZ_HEAP_TYPE_DMA || a2->pad ||
		    ((a2->fw_paddr | a2->fw_size | a2->gpu_paddr | a2->gpu_size) & (PAGE_SIZE - 1)) ||
		    a2->fw_paddr + a2->fw_size < a2->fw_paddr || a2->gpu_paddr + a2->gpu_size < a2->gpu_paddr) {
			pvz_err_rl(p, "CREATE_DEV_PHYS_HEAPS: type %u (1..3) pad %#x (0) fw %#llx+%#llx gpu %#llx+%#llx (4 KiB aligned, no wrap)\n",
				   a2->type, a2->pad, a2->fw_paddr, a2->fw_size, a2->gpu_paddr, a2->gpu_size);
			return pvz_protocol_error(p);
		}
		return 0;
	}
	case PVZ_IOC_GET_HEAP_ORIGIN: {
		struct pvz_heap_origin *o = a;

		put_unaligned_le32(o->heap, in);
		err = pvz_hypercall(p, h, PVZ_FN_GET_DEV_PHYS_HEAP_ORIGIN, in, 4, out, 4, PVZ_CALL_USER);
		if (err)
			return err;
		o->origin = get_unaligned_le32(out);
		if (h->status == PVZ_OK && o->origin > PVZ_ORIGIN_GUEST) {
			pvz_err_rl(p, "GET_DEV_PHYS_HEAP_ORIGIN: origin %u outside 0..1\n", o->origin);
			return pvz_protocol_error(p);
		}
		return 0;
	}
	case PVZ_IOC_GET_HEAP_ADDR_SIZE: {
		struct pvz_heap_addr_size *s = a;

		put_unaligned_le32(s->heap, in);
		err = pvz_hypercall(p, h, PVZ_FN_GET_DEV_PHYS_HEAP_ADDR_SIZE, in, 4, out, 16, PVZ_CALL_USER);
		if (err)
			return err;
		s->size = get_unaligned_le64(out);
		s->addr = get_unaligned_le64(out + 8);
		if (h->status == PVZ_OK && s->addr + s->size < s->addr) {
			pvz_err_rl(p, "GET_DEV_PHYS_HEAP_ADDR_SIZE: %#llx+%#llx wraps\n", s->addr, s->size);
			return pvz_protocol_error(p);
		}
		return 0;
	}
	case PVZ_IOC_READ_REG:
	case PVZ_IOC_WRITE_REG: {
		struct pvz_reg *r = a;
		bool rd = cmd == PVZ_IOC_READ_REG;

		put_unaligned_le32(r->offset, in);
		put_unaligned_le32(r->value, in + 4);
		err = pvz_hypercall(p, h, rd ? PVZ_FN_READ_REG : PVZ_FN_WRITE_REG, in, rd ? 4 : 8, out,
				    rd ? 4 : 0, PVZ_CALL_USER);
		if (!err && rd)
			r->value = get_unaligned_le32(out);
		return err;
	}
	}
	return -ENOTTY;
}

