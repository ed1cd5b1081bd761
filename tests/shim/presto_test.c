// SPDX-License-Identifier: GPL-2.0
/*
 * presto_test.c - in-guest test of presto.ko (run by tests/shim/run-qemu.sh).
 *
 * Usage: presto_test MODULE.ko MOUNTPOINT
 *
 * MOUNTPOINT is a freshly made ext4 filesystem.  The program loads the
 * module, arms /dev/presto on MOUNTPOINT/vol, performs a scripted list of
 * operations, reads the event records and compares them with the expected
 * list, checks overflow handling, closes, unloads the module and unmounts.
 *
 * Output (one line each, on stdout = the serial console):
 *   PRESTO-CHECK ok|FAIL <name> [detail]
 *   PRESTO-EVENT <reader> seq=N type=T flags=F ino=I path=P [path2=Q]
 *   PRESTO-CAPTURE-BEGIN name=main bytes=N
 *   PRESTO-HEX <offset> <hex bytes, up to 32 per line>
 *   PRESTO-CAPTURE-END name=main
 *   PRESTO-TEST: N passed, M failed
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "presto_abi.h"

/* Longer than a clock tick of the coarse clock file times come from. */
#define TICK_US 50000
/* A filesystem without i_version, for the ctime path of the write table. */
#define RAMVOL "/ramvol"

static int passed, failed;

static void check(int ok, const char *name, const char *fmt, ...)
{
	char detail[512] = "";
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(detail, sizeof(detail), fmt, ap);
		va_end(ap);
	}
	printf("PRESTO-CHECK %s %s%s%s\n", ok ? "ok" : "FAIL", name,
	       detail[0] ? " " : "", detail);
	fflush(stdout);
	if (ok)
		passed++;
	else
		failed++;
}

static void die(const char *what)
{
	printf("PRESTO-CHECK FAIL fatal %s: %s\n", what, strerror(errno));
	printf("PRESTO-TEST: %d passed, %d failed\n", passed, failed + 1);
	fflush(stdout);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- decoded events -------------------------------------------------- */

struct ev {
	uint32_t type, flags, mode;
	uint64_t seq, ino, time_ns, aux;
	char path[256], path2[256];
};

#define MAXEV 4096

struct evlist {
	const char *name;
	struct ev ev[MAXEV];
	int n;
	int bad;		/* malformed records seen */
	uint64_t last_seq;
	unsigned char *raw;	/* capture of all bytes read, if non-NULL */
	size_t rawlen, rawcap;
};

static const char *type_name(unsigned int t)
{
	static const char *const names[] = {
		"?", "CLOSE_WRITE", "CREATE", "MKDIR", "RMDIR", "UNLINK",
		"RENAME", "LINK", "SYMLINK", "SETATTR", "MOVED_IN",
		"MOVED_OUT", "OVERFLOW",
	};
	return t <= PRESTO_EV_MAX ? names[t] : "?";
}

/* Parse a buffer returned by read(); returns 0 if well formed. */
static int parse(struct evlist *l, const unsigned char *buf, size_t len,
		 uint64_t t0)
{
	size_t off = 0;

	if (l->raw) {
		if (l->rawlen + len > l->rawcap) {
			l->rawcap = (l->rawlen + len) * 2;
			l->raw = realloc(l->raw, l->rawcap);
		}
		memcpy(l->raw + l->rawlen, buf, len);
		l->rawlen += len;
	}
	while (off < len) {
		struct presto_event h;
		const unsigned char *p = buf + off;
		struct ev *e;
		size_t need, i;

		if (len - off < PRESTO_EVENT_HDR_LEN)
			return -1;
		memcpy(&h, p, sizeof(h));
		need = PRESTO_EVENT_HDR_LEN + h.path_len + 1 +
		       (h.path2_len ? h.path2_len + 1 : 0);
		if (h.rec_len % 8 || h.rec_len < need || h.rec_len > len - off ||
		    h.magic != PRESTO_MAGIC || h.version != PRESTO_ABI_VERSION ||
		    h.type < 1 || h.type > PRESTO_EV_MAX ||
		    p[PRESTO_EVENT_HDR_LEN + h.path_len] != 0 ||
		    (h.path2_len &&
		     p[PRESTO_EVENT_HDR_LEN + h.path_len + 1 + h.path2_len]) ||
		    h.seq != l->last_seq + 1 || h.time_ns < t0 ||
		    h.time_ns > now_ns()) {
			printf("PRESTO-BAD %s off=%zu len=%u magic=%x ver=%u type=%u seq=%llu\n",
			       l->name, off, h.rec_len, h.magic, h.version,
			       h.type, (unsigned long long)h.seq);
			l->bad++;
			return -1;
		}
		for (i = need; i < h.rec_len; i++)
			if (p[i])
				l->bad++;
		l->last_seq = h.seq;
		if (l->n < MAXEV) {
			e = &l->ev[l->n++];
			memset(e, 0, sizeof(*e));
			e->type = h.type;
			e->flags = h.flags;
			e->mode = h.mode;
			e->seq = h.seq;
			e->ino = h.ino;
			e->time_ns = h.time_ns;
			e->aux = h.aux;
			snprintf(e->path, sizeof(e->path), "%.*s", h.path_len,
				 p + PRESTO_EVENT_HDR_LEN);
			if (h.path2_len)
				snprintf(e->path2, sizeof(e->path2), "%.*s",
					 h.path2_len,
					 p + PRESTO_EVENT_HDR_LEN + h.path_len + 1);
		}
		off += h.rec_len;
	}
	return 0;
}

/* Drain a non-blocking reader into l. */
static void drain(int fd, struct evlist *l, uint64_t t0, size_t bufsz)
{
	static unsigned char buf[1 << 16];
	ssize_t n;

	if (bufsz > sizeof(buf))
		bufsz = sizeof(buf);
	for (;;) {
		n = read(fd, buf, bufsz);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			check(0, "read", "%s: %s", l->name, strerror(errno));
			return;
		}
		if (n == 0)
			return;
		if (parse(l, buf, n, t0))
			return;
	}
}

static void print_events(const struct evlist *l)
{
	int i;

	for (i = 0; i < l->n; i++) {
		const struct ev *e = &l->ev[i];

		printf("PRESTO-EVENT %s seq=%llu type=%s flags=%u ino=%llu aux=%llu path=%s%s%s\n",
		       l->name, (unsigned long long)e->seq, type_name(e->type),
		       e->flags, (unsigned long long)e->ino,
		       (unsigned long long)e->aux, e->path,
		       e->path2[0] ? " path2=" : "", e->path2);
	}
	fflush(stdout);
}

/* ---- expectations ---------------------------------------------------- */

struct exp {
	unsigned int type, flags;
	const char *path, *path2;
	uint64_t ino;		/* 0: not checked */
};

struct explist {
	struct exp e[256];
	int n;
};

static void expect(struct explist *x, unsigned int type, unsigned int flags,
		   const char *path, const char *path2, uint64_t ino)
{
	x->e[x->n++] = (struct exp){ type, flags, path, path2 ? path2 : "",
				     ino };
}

static void compare(const char *name, const struct evlist *l,
		    const struct explist *x)
{
	int i, n = l->n > x->n ? l->n : x->n, bad = 0;
	char cname[128];

	for (i = 0; i < n; i++) {
		const struct ev *e = i < l->n ? &l->ev[i] : NULL;
		const struct exp *w = i < x->n ? &x->e[i] : NULL;

		snprintf(cname, sizeof(cname), "%s.%02d", name, i + 1);
		if (!e || !w) {
			check(0, cname, e ? "unexpected %s %s" :
			      "missing %s %s", type_name(e ? e->type : w->type),
			      e ? e->path : w->path);
			bad++;
			continue;
		}
		if (e->type != w->type || e->flags != w->flags ||
		    strcmp(e->path, w->path) || strcmp(e->path2, w->path2) ||
		    (w->ino && e->ino != w->ino)) {
			check(0, cname,
			      "got %s f=%u '%s' '%s' ino=%llu, want %s f=%u '%s' '%s' ino=%llu",
			      type_name(e->type), e->flags, e->path, e->path2,
			      (unsigned long long)e->ino, type_name(w->type),
			      w->flags, w->path, w->path2,
			      (unsigned long long)w->ino);
			bad++;
			continue;
		}
		check(1, cname, "%s '%s'%s%s", type_name(e->type), e->path,
		      e->path2[0] ? " -> " : "", e->path2);
	}
	check(!bad && !l->bad, name, "%d events, %d expected, %d malformed",
	      l->n, x->n, l->bad);
}

/* ---- helpers for scripted operations --------------------------------- */

static uint64_t ino_of(const char *path)
{
	struct stat st;

	if (lstat(path, &st))
		die(path);
	return st.st_ino;
}

static uint64_t write_file(const char *path, const char *data, int flags)
{
	int fd = open(path, O_WRONLY | flags, 0644);
	struct stat st;

	if (fd < 0)
		die(path);
	if (data && write(fd, data, strlen(data)) != (ssize_t)strlen(data))
		die("write");
	fstat(fd, &st);
	close(fd);
	return st.st_ino;
}

static void xcall(int ret, const char *what)
{
	if (ret)
		die(what);
}

static int arm(int fd, const char *path, uint32_t ring, uint32_t flags)
{
	struct presto_arm a = {
		.size = sizeof(a),
		.flags = flags,
		.ring_bytes = ring,
		.path = (uintptr_t)path,
	};

	return ioctl(fd, PRESTO_IOC_ARM, &a) ? -errno : 0;
}

static void hexdump(const char *name, const unsigned char *p, size_t n)
{
	size_t i, j;

	printf("PRESTO-CAPTURE-BEGIN name=%s bytes=%zu\n", name, n);
	for (i = 0; i < n; i += 32) {
		printf("PRESTO-HEX %06zx ", i);
		for (j = i; j < n && j < i + 32; j++)
			printf("%02x", p[j]);
		printf("\n");
	}
	printf("PRESTO-CAPTURE-END name=%s\n", name);
	fflush(stdout);
}

/* Count vmalloc areas owned by the module (its rings). */
static int vmalloc_presto(void)
{
	FILE *f = fopen("/proc/vmallocinfo", "r");
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "[presto]"))
			n++;
	fclose(f);
	return n;
}

static int dmesg_clean(void)
{
	static char buf[1 << 18];
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof(buf) - 1);
	const char *bad[] = { "WARNING:", "BUG:", "Call Trace", "Oops",
			      "Busy inodes", "leak", NULL };
	int i, ok = 1;

	if (n < 0)
		return 0;
	buf[n] = 0;
	for (i = 0; bad[i]; i++) {
		if (strstr(buf, bad[i])) {
			printf("PRESTO-DMESG found '%s'\n", bad[i]);
			ok = 0;
		}
	}
	if (!ok) {
		char *line = strtok(buf, "\n");

		for (; line; line = strtok(NULL, "\n"))
			printf("PRESTO-DMESG %s\n", line);
	}
	return ok;
}

/*
 * Two writer processes hammer the volume while this process reads with a
 * blocking fd.  Every iteration of a writer yields exactly 4 events
 * (CREATE, CLOSE_WRITE, RENAME, UNLINK), so records + lost is known.
 */
#define STRESS_ITER 300
static struct evlist stl = { .name = "stress" };

static void stress(const char *vol)
{
	static unsigned char buf[1 << 16];
	int fd = open(PRESTO_DEVICE, O_RDONLY | O_CLOEXEC);
	int w, i, alive = 2, normal = 0, overflows = 0, paths_ok = 1;
	uint64_t lost = 0, t0 = now_ns();
	pid_t pid[2];

	if (fd < 0 || arm(fd, vol, 8 << 10, 0))
		die("stress arm");
	xcall(mkdir("st", 0755), "mkdir st");
	printf("PRESTO-INFO stress with %ld cpus\n", sysconf(_SC_NPROCESSORS_ONLN));
	for (w = 0; w < 2; w++) {
		pid[w] = fork();
		if (pid[w] < 0)
			die("fork");
		if (!pid[w]) {
			char a[64], b[64];

			for (i = 0; i < STRESS_ITER; i++) {
				snprintf(a, sizeof(a), "st/c%d_%d", w, i);
				snprintf(b, sizeof(b), "st/r%d_%d", w, i);
				write_file(a, "x", O_CREAT);
				if (rename(a, b) || unlink(b))
					_exit(1);
			}
			_exit(0);
		}
	}
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int status;
		ssize_t n;

		while (alive && waitpid(-1, &status, WNOHANG) > 0) {
			alive--;
			check(WIFEXITED(status) && !WEXITSTATUS(status),
			      "stress-writer", NULL);
		}
		if (poll(&pfd, 1, alive ? 2000 : 500) <= 0) {
			if (!alive)
				break;
			continue;
		}
		n = read(fd, buf, sizeof(buf));	/* blocking fd */
		if (n <= 0 || parse(&stl, buf, n, t0))
			break;
		usleep(100000);	/* a slow reader: let the 8 KiB ring overflow */
	}
	for (i = 0; i < stl.n; i++) {
		if (stl.ev[i].type == PRESTO_EV_OVERFLOW) {
			overflows++;
			lost += stl.ev[i].aux;
		} else {
			normal++;
			if (strncmp(stl.ev[i].path, "st", 2))
				paths_ok = 0;
		}
	}
	check(!stl.bad && paths_ok && normal + (int)lost == 1 + 2 * 4 * STRESS_ITER,
	      "stress", "records=%d lost=%llu overflows=%d malformed=%d (want %d)",
	      normal, (unsigned long long)lost, overflows, stl.bad,
	      1 + 2 * 4 * STRESS_ITER);
	close(fd);
}

/*
 * Overflow with records that are not 56 bytes long.  The ring keeps an
 * OVERFLOW record's worth (presto_rec_len(0, 0) = 56 bytes) free after every
 * write.  Paths of 34 bytes make 88-byte records, and 4096 - 48 = 46 * 88: a
 * reserve of only a header (48 bytes) would queue a 46th record, leave 48
 * bytes free, and the 56-byte OVERFLOW record flushed by the next read would
 * wrap onto the first 8 bytes of the oldest unread record (its rec_len
 * becomes 0: WARN in presto_read, the read fails).  With the 56-byte reserve
 * exactly 45 records fit: 4096 - 44 * 88 = 224 >= 88 + 56, 4096 - 45 * 88 =
 * 136 < 144.  Two rounds, so the second one starts at a wrapped position.
 */
#define OV88_FILES 100
#define OV88_FIT 45
static struct evlist ov88 = { .name = "ov88" };

static void overflow88(const char *vol)
{
	int fd = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int round, i, err, normal, overflows, lens_ok, order_ok;
	uint64_t lost, t0 = now_ns();
	struct presto_stats st;
	char name[64], cname[64];

	xcall(mkdir("o88", 0755), "mkdir o88");	/* before arming: no 56-byte MKDIR */
	if (fd < 0 || arm(fd, vol, PRESTO_RING_MIN, 0))
		die("ov88 arm");
	for (round = 0; round < 2; round++) {
		for (i = 0; i < OV88_FILES; i++) {
			/* "o88/r0f000_" + 23 x = 34 bytes: rec_len 88 */
			snprintf(name, sizeof(name), "o88/r%df%03d_%.23s", round,
				 i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
			write_file(name, NULL, O_CREAT);
		}
		memset(&st, 0, sizeof(st));
		snprintf(cname, sizeof(cname), "overflow88-stats.%d", round + 1);
		err = ioctl(fd, PRESTO_IOC_STATS, &st);
		check(!err && st.queued == (uint64_t)OV88_FIT * (round + 1) + round &&
		      st.pending_lost == OV88_FILES - OV88_FIT &&
		      st.lost == (uint64_t)(OV88_FILES - OV88_FIT) * (round + 1) &&
		      st.ring_used == OV88_FIT * 88,
		      cname, "queued=%llu lost=%llu pending_lost=%llu used=%u (want %d per round, 88 bytes each)",
		      (unsigned long long)st.queued, (unsigned long long)st.lost,
		      (unsigned long long)st.pending_lost, st.ring_used, OV88_FIT);
		ov88.n = 0;
		drain(fd, &ov88, t0, 1 << 16);
		normal = overflows = 0;
		lost = 0;
		lens_ok = order_ok = 1;
		for (i = 0; i < ov88.n; i++) {
			if (ov88.ev[i].type == PRESTO_EV_OVERFLOW) {
				overflows++;
				lost += ov88.ev[i].aux;
				if (i != ov88.n - 1)
					order_ok = 0;
			} else {
				snprintf(name, sizeof(name), "o88/r%df%03d_%.23s",
					 round, normal,
					 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
				if (ov88.ev[i].type != PRESTO_EV_CREATE ||
				    strcmp(ov88.ev[i].path, name))
					order_ok = 0;
				if (strlen(ov88.ev[i].path) != 34)
					lens_ok = 0;
				normal++;
			}
		}
		snprintf(cname, sizeof(cname), "overflow88.%d", round + 1);
		check(!ov88.bad && lens_ok && order_ok && overflows == 1 &&
		      normal == OV88_FIT && lost == OV88_FILES - OV88_FIT,
		      cname, "records=%d overflows=%d lost=%llu malformed=%d (want %d + 1 OVERFLOW of %d)",
		      normal, overflows, (unsigned long long)lost, ov88.bad,
		      OV88_FIT, OV88_FILES - OV88_FIT);
	}
	close(fd);
}

/*
 * Reads that fail during a flood consume nothing: one with a buffer too small
 * for the next record (EINVAL) and one with a bad user pointer (EFAULT),
 * alternating while a 4 KiB ring overflows.  Each may queue the pending
 * OVERFLOW record before failing; the next loss must then stay pending rather
 * than be written over unread records.  Afterwards every event is either read
 * or counted in an OVERFLOW record, exactly, and nothing is malformed.
 */
#define HOSTILE_FILES 400
static struct evlist hostl = { .name = "hostile" };

static void hostile_reads(const char *vol)
{
	int fd = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int i, normal = 0, einval = 0, efault = 0, other = 0, other_errno = 0;
	/* An address no process can write: the kernel's copy faults. */
	void *volatile bad = (void *)8;
	uint64_t lost = 0, t0 = now_ns();
	char name[64], small[60];	/* >= a header, < one 88-byte record */
	ssize_t n;

	xcall(mkdir("hr", 0755), "mkdir hr");
	if (fd < 0 || arm(fd, vol, PRESTO_RING_MIN, 0))
		die("hostile arm");
	for (i = 0; i < HOSTILE_FILES; i++) {
		snprintf(name, sizeof(name), "hr/f%04d_%.23s", i,
			 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		write_file(name, NULL, O_CREAT);
		if (i % 3 == 1) {
			n = read(fd, small, sizeof(small));
			if (n < 0 && errno == EINVAL)
				einval++;
			else
				other++, other_errno = n < 0 ? errno : (int)-n;
		} else if (i % 3 == 2) {
			errno = 0;
			n = read(fd, bad, 4096);
			if (n < 0 && errno == EFAULT)
				efault++;
			else
				other++, other_errno = n < 0 ? errno : -1;
		}
	}
	drain(fd, &hostl, t0, 1 << 16);
	for (i = 0; i < hostl.n; i++) {
		if (hostl.ev[i].type == PRESTO_EV_OVERFLOW)
			lost += hostl.ev[i].aux;
		else if (hostl.ev[i].type == PRESTO_EV_CREATE)
			normal++;
	}
	check(!hostl.bad && !other && normal + lost == HOSTILE_FILES &&
	      einval > 100 && efault > 100, "hostile-reads",
	      "read %d + lost %llu of %d events, malformed %d, EINVAL %d, EFAULT %d, other %d (%d)",
	      normal, (unsigned long long)lost, HOSTILE_FILES, hostl.bad,
	      einval, efault, other, other_errno);
	check(dmesg_clean(), "hostile-reads-dmesg-clean", NULL);
	close(fd);
}

/* Index in @names of the file a CLOSE_WRITE record reports; else -1. */
static int closed_file(const struct ev *e, const char *const *names, int n)
{
	int j;

	if (e->type != PRESTO_EV_CLOSE_WRITE)
		return -1;
	for (j = 0; j < n; j++)
		if (!strcmp(e->path, names[j]))
			return j;
	return -1;
}

/*
 * Size changes that no write-close follows are reported at once: truncate(2)
 * by path, ftruncate(2) without a write, and an O_TRUNC open closed without
 * a write; a punched hole and a copy_file_range into a file at their close.
 * Each gives a CLOSE_WRITE record for its file (the close of a file changed
 * through it may give a second one); a file opened for writing and closed
 * unchanged gives none.
 */
static struct evlist trl = { .name = "truncate" };

static void truncations(const char *vol)
{
	static const char *const names[] = { "tr/bypath", "tr/byfd", "tr/otrunc",
					      "tr/punched", "tr/copied",
					      "tr/untouched" };
	int fd = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int f, g, i, j, seen[6] = { 0 }, others = 0, ok = 1;
	loff_t in_off = 0;
	uint64_t t0 = now_ns();

	xcall(mkdir("tr", 0755), "mkdir tr");
	for (i = 0; i < 6; i++)
		write_file(names[i], "0123456789", O_CREAT);
	usleep(TICK_US);	/* older than a clock tick: see mmap_writes() */
	if (fd < 0 || arm(fd, vol, 0, 0))
		die("truncate arm");
	write_file(names[5], NULL, 0);
	xcall(truncate(names[0], 3), "truncate");
	f = open(names[1], O_WRONLY | O_CLOEXEC);
	if (f < 0 || ftruncate(f, 2))
		die("ftruncate");
	close(f);
	f = open(names[2], O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (f < 0)
		die("open O_TRUNC");
	close(f);
	/* fallocate and copy_file_range raise MODIFY on an open file: the close reports them */
	f = open(names[3], O_WRONLY | O_CLOEXEC);
	if (f < 0 || fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4))
		die("fallocate punch hole");
	close(f);
	f = open(names[0], O_RDONLY | O_CLOEXEC);
	g = open(names[4], O_WRONLY | O_CLOEXEC);
	if (f < 0 || g < 0 || copy_file_range(f, &in_off, g, NULL, 3, 0) != 3)
		die("copy_file_range");
	close(f);
	close(g);
	drain(fd, &trl, t0, 1 << 16);
	for (i = 0; i < trl.n; i++) {
		j = closed_file(&trl.ev[i], names, 6);
		if (j >= 0)
			seen[j]++;
		else
			others++;
	}
	for (j = 0; j < 5; j++)
		ok = ok && seen[j] >= 1 && seen[j] <= 2;
	check(ok && !seen[5] && !others && !trl.bad, "truncate-reported",
	      "truncate %d, ftruncate %d, O_TRUNC %d, punch hole %d, copy_file_range %d, untouched %d, other records %d",
	      seen[0], seen[1], seen[2], seen[3], seen[4], seen[5], others);
	close(fd);
}

/*
 * Writes through a shared mapping raise no MODIFY; the close that drops the
 * last reference (munmap, when the mapping outlives the descriptor) must
 * still report them.  Each file below must get a CLOSE_WRITE record after
 * its change; mm/fresh and mm/resized two (the ftruncate at once, the
 * close after it); the untouched controls none.  Only mm/prearm (opened
 * before arming) and mm/fresh (stored to in the tick of its ftruncate, which
 * a ctime cannot tell apart) may be flagged UNVERIFIED.  Run in @vol, the current directory, on ext4
 * (which keeps an i_version) and on ramfs (which does not: ctimes then).
 */
enum { MM_MSYNC, MM_NOSYNC, MM_FD_FIRST, MM_PREARM, MM_TWO, MM_FRESH,
       MM_RESIZED, MM_UNTOUCHED, MM_READ, MM_N };


static char *map_file(const char *path, int *fdp, int prot)
{
	int f = open(path, (prot & PROT_WRITE ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	char *m;

	if (f < 0)
		die(path);
	m = mmap(NULL, 4096, prot, MAP_SHARED, f, 0);
	if (m == MAP_FAILED)
		die("mmap");
	*fdp = f;
	return m;
}

static void mmap_writes(const char *vol, const char *check_name)
{
	static struct evlist mml;
	static const char *const names[MM_N] = {
		"mm/msync", "mm/nosync", "mm/fdfirst", "mm/prearm", "mm/two",
		"mm/fresh", "mm/resized", "mm/untouched", "mm/read"
	};
	static const int want[MM_N] = { 1, 1, 1, 1, 1, 2, 2, 0, 0 };
	static char page[4096];
	int fd = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int f, g, pre_fd, i, j, seen[MM_N] = { 0 }, others = 0, ok = 1;
	int unverified = 0;
	char *m, *pre;
	uint64_t t0 = now_ns();

	memset(&mml, 0, sizeof(mml));
	mml.name = check_name;
	xcall(mkdir("mm", 0755), "mkdir mm");
	memset(page, 'a', sizeof(page));
	for (i = 0; i < MM_N; i++)
		if (i != MM_FRESH) {
			f = open(names[i], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
			if (f < 0 || write(f, page, sizeof(page)) != sizeof(page))
				die(names[i]);
			close(f);
		}
	pre = map_file(names[MM_PREARM], &pre_fd, PROT_READ | PROT_WRITE);
	/*
	 * Without an i_version the module compares ctimes, which move once per
	 * clock tick: a file last changed in the current tick is reported at
	 * every close.  Let the tick pass, so the controls are meaningful.
	 */
	usleep(TICK_US);
	if (fd < 0 || arm(fd, vol, 0, 0))
		die("mmap arm");

	m = map_file(names[MM_MSYNC], &f, PROT_READ | PROT_WRITE);
	m[10] = 'S';
	xcall(msync(m, 4096, MS_SYNC), "msync");
	munmap(m, 4096);
	close(f);

	m = map_file(names[MM_NOSYNC], &f, PROT_READ | PROT_WRITE);
	m[10] = 'N';
	munmap(m, 4096);
	close(f);

	m = map_file(names[MM_FD_FIRST], &f, PROT_READ | PROT_WRITE);
	close(f);		/* the mapping holds the file: no close event */
	m[10] = 'F';
	munmap(m, 4096);	/* now the last reference goes */

	pre[10] = 'P';		/* mapped before the reader armed */
	munmap(pre, 4096);
	close(pre_fd);

	/* a second writer opens and closes, unchanged, before the first writes */
	m = map_file(names[MM_TWO], &f, PROT_READ | PROT_WRITE);
	g = open(names[MM_TWO], O_WRONLY | O_CLOEXEC);
	if (g < 0)
		die("open two");
	close(g);
	m[10] = 'T';
	munmap(m, 4096);
	close(f);

	f = open(names[MM_FRESH], O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f < 0 || ftruncate(f, 4096))
		die("fresh");
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	if (m == MAP_FAILED)
		die("mmap fresh");
	m[10] = 'R';
	munmap(m, 4096);
	close(f);

	/*
	 * The page stays writable across the ftruncate: the second store moves
	 * no stamp, so the entry must not restart while the mapping exists.
	 */
	m = map_file(names[MM_RESIZED], &f, PROT_READ | PROT_WRITE);
	m[10] = 'x';
	xcall(ftruncate(f, 4096), "ftruncate resized");
	m[11] = 'y';
	munmap(m, 4096);
	close(f);

	m = map_file(names[MM_UNTOUCHED], &f, PROT_READ | PROT_WRITE);
	ok = m[10] == 'a';	/* read through a writable mapping */
	munmap(m, 4096);
	close(f);
	m = map_file(names[MM_READ], &f, PROT_READ);
	ok = ok && m[10] == 'a';
	munmap(m, 4096);
	close(f);

	drain(fd, &mml, t0, 1 << 16);
	for (i = 0; i < mml.n; i++) {
		j = closed_file(&mml.ev[i], names, MM_N);
		if (j >= 0) {
			seen[j]++;
			if (mml.ev[i].flags & PRESTO_F_UNVERIFIED &&
			    j != MM_PREARM && j != MM_FRESH)
				unverified++;
		} else if (mml.ev[i].type != PRESTO_EV_CREATE ||
			 strcmp(mml.ev[i].path, names[MM_FRESH]))
			others++;
	}
	for (j = 0; j < MM_N; j++)
		ok = ok && (want[j] ? seen[j] >= want[j] : !seen[j]);
	check(ok && !others && !unverified && !mml.bad, check_name,
	      "msync %d, no msync %d, fd closed first %d, mapped before arming %d, two writers %d, fresh %d, resized while mapped %d, untouched %d, read-only %d, other records %d, unverified %d",
	      seen[0], seen[1], seen[2], seen[3], seen[4], seen[5], seen[6],
	      seen[7], seen[8], others, unverified);
	close(fd);
}

/*
 * Changes the review found lost, each must now give a CLOSE_WRITE record:
 * a store after a read fault on tmpfs (its pages are mapped writable at the
 * read, so the ctime does not move); a file written through its name in
 * the volume after an open of another name outside; a file written through
 * a name unlinked meanwhile while another name remains.
 */
static void review_cases(const char *vol, const char *mnt)
{
	static struct evlist rl = { .name = "review" };
	static const char *const tmp_names[] = { "f" };
	static const char *const vol_names[] = { "rv/linked", "rv/b" };
	char out_name[256];
	int fd = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int tfd = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int f, i, j, seen[3] = { 0 };
	char *m;
	uint64_t t0 = now_ns();

	snprintf(out_name, sizeof(out_name), "%s/outside/rv-link", mnt);
	xcall(mkdir("rv", 0755), "mkdir rv");
	write_file("rv/linked", "0123456789", O_CREAT);
	xcall(link("rv/linked", out_name), "link outside");
	write_file("rv/a", "0123456789", O_CREAT);
	xcall(link("rv/a", "rv/b"), "link rv/b");
	xcall(mkdir("/tmpvol", 0755), "mkdir /tmpvol");
	xcall(mount("none", "/tmpvol", "tmpfs", 0, NULL), "mount tmpfs");
	f = open("/tmpvol/f", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f < 0 || ftruncate(f, 8192))
		die("tmpfs file");
	close(f);
	usleep(TICK_US);
	if (fd < 0 || tfd < 0 || arm(fd, vol, 0, 0) || arm(tfd, "/tmpvol", 0, 0))
		die("review arm");

	m = map_file("/tmpvol/f", &f, PROT_READ | PROT_WRITE);
	if (m[0] == 0)		/* a read fault first: the page comes writable */
		m[1] = 'x';
	munmap(m, 4096);
	close(f);

	write_file(out_name, NULL, 0);	/* opened outside, unchanged */
	write_file("rv/linked", "more", O_APPEND);

	f = open("rv/a", O_WRONLY | O_APPEND | O_CLOEXEC);
	if (f < 0)
		die("open rv/a");
	xcall(unlink("rv/a"), "unlink rv/a");
	if (write(f, "x", 1) != 1)
		die("write rv/a");
	close(f);

	drain(tfd, &rl, t0, 1 << 16);
	for (i = 0; i < rl.n; i++)
		seen[0] += closed_file(&rl.ev[i], tmp_names, 1) == 0;
	rl.n = 0;
	rl.last_seq = 0;
	drain(fd, &rl, t0, 1 << 16);
	for (i = 0; i < rl.n; i++) {
		j = closed_file(&rl.ev[i], vol_names, 2);
		if (j >= 0)
			seen[1 + j]++;
	}
	check(seen[0] && seen[1] && seen[2] && !rl.bad, "review-cases-reported",
	      "tmpfs store after a read %d, written inside after an open outside %d, written through an unlinked name %d",
	      seen[0], seen[1], seen[2]);
	close(fd);
	close(tfd);
	xcall(umount("/tmpvol"), "umount tmpfs");
}

/*
 * Set the clock back onto a mapped file's ctime and store: the store's
 * write fault finds the ctime already "now" and leaves it, so only the
 * clock's move can tell.  Returns 1 if the store left the ctime as it was
 * (the case was exercised), 0 if a tick passed first, -1 on error.
 */
static int store_at_old_ctime(const char *path)
{
	struct timespec real0, mono0, mono1, old, back;
	struct stat st;
	int f, same;
	char *m;

	if (stat(path, &st))
		return -1;
	old = st.st_ctim;
	m = map_file(path, &f, PROT_READ | PROT_WRITE);
	clock_gettime(CLOCK_REALTIME, &real0);
	clock_gettime(CLOCK_MONOTONIC, &mono0);
	if (clock_settime(CLOCK_REALTIME, &old))
		return -1;
	m[0] ^= 1;
	clock_gettime(CLOCK_MONOTONIC, &mono1);
	back.tv_sec = real0.tv_sec + (mono1.tv_sec - mono0.tv_sec);
	back.tv_nsec = real0.tv_nsec + (mono1.tv_nsec - mono0.tv_nsec);
	if (back.tv_nsec < 0) {
		back.tv_nsec += 1000000000L;
		back.tv_sec--;
	} else if (back.tv_nsec >= 1000000000L) {
		back.tv_nsec -= 1000000000L;
		back.tv_sec++;
	}
	if (clock_settime(CLOCK_REALTIME, &back))
		return -1;
	munmap(m, 4096);
	close(f);
	if (stat(path, &st))
		return -1;
	same = st.st_ctim.tv_sec == old.tv_sec &&
	       st.st_ctim.tv_nsec == old.tv_nsec;
	return same;
}

/*
 * Where the write table's stamps and the dentry walk cannot see, the change
 * must still not be forgotten: a store through a mapping after the clock
 * was set back onto the file's ctime (on ramfs, where no other reader is
 * armed, as the records then carry times from the past) reports a close;
 * a write through a descriptor from open_by_handle_at, whose dentry is cut
 * from its parents after the caches were dropped, is reported lost.
 */
static void blind_spots(const char *vol, const char *mnt)
{
	static struct evlist cl = { .name = "clock" }, hl = { .name = "handle" };
	static const char *const clock_names[] = { "clock" };
	struct {
		struct file_handle fh;
		unsigned char buf[MAX_HANDLE_SZ];
	} h;
	int fd = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int hfd = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int f, i, mfd, mount_id, tries, exercised = 0, closes = 0, lost = 0;
	char link[64], target[512];
	ssize_t n;
	uint64_t t0 = now_ns();

	if (mkdir(RAMVOL, 0755) && errno != EEXIST)
		die("mkdir " RAMVOL);
	xcall(mount("none", RAMVOL, "ramfs", 0, NULL), "mount ramfs");
	write_file(RAMVOL "/clock", "0123456789", O_CREAT);
	usleep(TICK_US);
	if (fd < 0 || hfd < 0 || arm(fd, RAMVOL, 0, 0))
		die("blind-spots arm");
	for (tries = 0; tries < 5 && exercised <= 0; tries++)
		exercised = store_at_old_ctime(RAMVOL "/clock");
	drain(fd, &cl, 0, 1 << 16);
	for (i = 0; i < cl.n; i++)
		closes += closed_file(&cl.ev[i], clock_names, 1) == 0;
	check(exercised == 1 && closes >= 1 && !cl.bad,
	      "clock-set-back-reported",
	      "ctime left as it was %d (tries %d), closes reported %d",
	      exercised, tries, closes);
	close(fd);
	xcall(umount(RAMVOL), "umount ramfs");

	xcall(mkdir("bs", 0755), "mkdir bs");
	write_file("bs/handle", "0123", O_CREAT);
	h.fh.handle_bytes = MAX_HANDLE_SZ;
	xcall(name_to_handle_at(AT_FDCWD, "bs/handle", &h.fh, &mount_id, 0),
	      "name_to_handle_at");
	if (arm(hfd, vol, 0, 0))
		die("blind-spots arm handle");
	sync();
	write_file("/proc/sys/vm/drop_caches", "2\n", 0);
	mfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	f = open_by_handle_at(mfd, &h.fh, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (mfd < 0 || f < 0)
		die("open_by_handle_at");
	snprintf(link, sizeof(link), "/proc/self/fd/%d", f);
	n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	if (write(f, "x", 1) != 1)
		die("write by handle");
	close(f);
	close(mfd);
	drain(hfd, &hl, t0, 1 << 16);
	for (i = 0; i < hl.n; i++)
		if (hl.ev[i].type == PRESTO_EV_OVERFLOW)
			lost += hl.ev[i].aux;
	check(!strstr(target, "bs/handle") && lost >= 1 && !hl.bad,
	      "handle-write-reported-lost",
	      "descriptor names \"%s\", lost %d, records %d",
	      target, lost, hl.n);
	close(hfd);
}

/* ---- the test -------------------------------------------------------- */

static struct evlist mainl = { .name = "main" };
static struct evlist subl = { .name = "sub" };
static struct evlist ovl = { .name = "overflow" };
static struct explist mainx, subx;

int main(int argc, char **argv)
{
	const char *ko, *mnt;
	char vol[256], outside[256];
	uint64_t t0, ino_f1, ino_a, ino_b, ino, ino_x, ino_f4;
	struct presto_stats st;
	struct pollfd pfd;
	int kfd, fd, fd_sub, fd_ov, i, err, sum;
	char name[512];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 3) {
		fprintf(stderr, "usage: %s presto.ko mountpoint\n", argv[0]);
		return 2;
	}
	ko = argv[1];
	mnt = argv[2];
	snprintf(vol, sizeof(vol), "%s/vol", mnt);
	snprintf(outside, sizeof(outside), "%s/outside", mnt);

	/* Load the module. */
	kfd = open(ko, O_RDONLY | O_CLOEXEC);
	if (kfd < 0)
		die(ko);
	err = syscall(SYS_finit_module, kfd, "", 0);
	check(!err, "insmod", err ? strerror(errno) : NULL);
	close(kfd);
	if (err)
		die("finit_module");

	xcall(mkdir(vol, 0755), "mkdir vol");
	xcall(mkdir(outside, 0755), "mkdir outside");
	xcall(chdir(vol), "chdir vol");
	xcall(mkdir(".replicator", 0755), "mkdir .replicator");

	fd = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		die(PRESTO_DEVICE);

	/* ioctl argument checks */
	check(arm(fd, "/nonexistent", 0, 0) == -ENOENT, "arm-enoent", NULL);
	check(arm(fd, vol, 1000, 0) == -EINVAL, "arm-bad-ring", NULL);
	check(arm(fd, vol, 0, 0x80) == -EINVAL, "arm-bad-flags", NULL);
	check(read(fd, name, sizeof(name)) == 0, "read-unarmed-eof", NULL);

	t0 = now_ns();
	check(arm(fd, vol, 0, 0) == 0, "arm", NULL);
	check(arm(fd, vol, 0, 0) == -EBUSY, "arm-twice-ebusy", NULL);
	memset(&st, 0, sizeof(st));
	check(!ioctl(fd, PRESTO_IOC_STATS, &st) && st.armed == 1 &&
	      st.ring_bytes == PRESTO_RING_DEFAULT &&
	      st.abi_version == PRESTO_ABI_VERSION, "stats-armed", NULL);
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	check(poll(&pfd, 1, 0) == 0, "poll-empty", NULL);

	/* 1. create + write + close */
	ino_f1 = write_file("f1", "hello\n", O_CREAT);
	expect(&mainx, PRESTO_EV_CREATE, 0, "f1", NULL, ino_f1);
	expect(&mainx, PRESTO_EV_CLOSE_WRITE, 0, "f1", NULL, ino_f1);
	pfd.revents = 0;
	check(poll(&pfd, 1, 1000) == 1 && (pfd.revents & POLLIN),
	      "poll-readable", NULL);

	/* 2. mkdir; a second reader armed on the sub-volume d1 */
	xcall(mkdir("d1", 0755), "mkdir d1");
	expect(&mainx, PRESTO_EV_MKDIR, PRESTO_F_ISDIR, "d1", NULL,
	       ino_of("d1"));
	fd_sub = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd_sub < 0)
		die("open sub");
	check(arm(fd_sub, "d1", 0, 0) == 0, "arm-sub", NULL);

	/* 3. mkdir + rmdir */
	xcall(mkdir("d2", 0755), "mkdir d2");
	ino = ino_of("d2");
	xcall(rmdir("d2"), "rmdir d2");
	expect(&mainx, PRESTO_EV_MKDIR, PRESTO_F_ISDIR, "d2", NULL, ino);
	expect(&mainx, PRESTO_EV_RMDIR, PRESTO_F_ISDIR, "d2", NULL, ino);

	/* 4-6. create without writing; reopen for writing without writing;
	 * unlink */
	ino = write_file("f2", NULL, O_CREAT);
	write_file("f1", NULL, 0);
	xcall(unlink("f2"), "unlink f2");
	expect(&mainx, PRESTO_EV_CREATE, 0, "f2", NULL, ino);
	expect(&mainx, PRESTO_EV_UNLINK, 0, "f2", NULL, ino);

	/* 7. rename of a file (into the sub-volume) */
	xcall(rename("f1", "d1/f1r"), "rename f1");
	expect(&mainx, PRESTO_EV_RENAME, 0, "f1", "d1/f1r", ino_f1);
	expect(&subx, PRESTO_EV_MOVED_IN, 0, "f1r", NULL, ino_f1);

	/* 8-9. a directory with files, renamed */
	xcall(mkdir("d3", 0755), "mkdir d3");
	ino = ino_of("d3");
	ino_a = write_file("d3/a", "aaa\n", O_CREAT);
	ino_b = write_file("d3/b", "bbb\n", O_CREAT);
	xcall(rename("d3", "d4"), "rename d3");
	expect(&mainx, PRESTO_EV_MKDIR, PRESTO_F_ISDIR, "d3", NULL, ino);
	expect(&mainx, PRESTO_EV_CREATE, 0, "d3/a", NULL, ino_a);
	expect(&mainx, PRESTO_EV_CLOSE_WRITE, 0, "d3/a", NULL, ino_a);
	expect(&mainx, PRESTO_EV_CREATE, 0, "d3/b", NULL, ino_b);
	expect(&mainx, PRESTO_EV_CLOSE_WRITE, 0, "d3/b", NULL, ino_b);
	expect(&mainx, PRESTO_EV_RENAME, PRESTO_F_ISDIR, "d3", "d4", ino);

	/* 10-11. hard link, symlink */
	xcall(link("d4/a", "hl"), "link");
	expect(&mainx, PRESTO_EV_LINK, 0, "hl", NULL, ino_a);
	xcall(symlink("d4/a", "sl"), "symlink");
	expect(&mainx, PRESTO_EV_SYMLINK, 0, "sl", NULL, ino_of("sl"));

	/* 12. chmod, utimes, chmod of a directory */
	xcall(chmod("d4/b", 0600), "chmod");
	expect(&mainx, PRESTO_EV_SETATTR, 0, "d4/b", NULL, ino_b);
	{
		struct timeval tv[2] = { { 1000000, 0 }, { 2000000, 0 } };

		xcall(utimes("d4/a", tv), "utimes");
	}
	expect(&mainx, PRESTO_EV_SETATTR, 0, "d4/a", NULL, ino_a);
	xcall(chmod("d1", 0700), "chmod d1");
	expect(&mainx, PRESTO_EV_SETATTR, PRESTO_F_ISDIR, "d1", NULL,
	       ino_of("d1"));
	expect(&subx, PRESTO_EV_SETATTR, PRESTO_F_ISDIR, "", NULL,
	       ino_of("d1"));

	/* 13. many small writes: one close event */
	{
		int wfd = open("f3", O_WRONLY | O_CREAT, 0644);

		if (wfd < 0)
			die("f3");
		for (i = 0; i < 500; i++)
			if (write(wfd, "0123456789abcdef", 16) != 16)
				die("write f3");
		close(wfd);
	}
	expect(&mainx, PRESTO_EV_CREATE, 0, "f3", NULL, ino_of("f3"));
	expect(&mainx, PRESTO_EV_CLOSE_WRITE, 0, "f3", NULL, ino_of("f3"));

	/* 14. inside .replicator/: nothing */
	write_file(".replicator/kml", "record\n", O_CREAT);
	xcall(mkdir(".replicator/tmp", 0755), "mkdir private");
	xcall(rename(".replicator/kml", ".replicator/kml2"), "rename private");
	xcall(chmod(".replicator/kml2", 0600), "chmod private");
	write_file(".replicator/gone", "x\n", O_CREAT);
	xcall(unlink(".replicator/gone"), "unlink private");
	xcall(rmdir(".replicator/tmp"), "rmdir private");
	xcall(chmod(".replicator", 0700), "chmod .replicator");

	/* 15. outside the volume: nothing */
	snprintf(name, sizeof(name), "%s/x", outside);
	ino_x = write_file(name, "outside\n", O_CREAT);
	snprintf(name, sizeof(name), "%s/y", outside);
	xcall(mkdir(name, 0755), "mkdir outside/y");
	xcall(rmdir(name), "rmdir outside/y");

	/* 16-17. moves across the volume boundary */
	snprintf(name, sizeof(name), "%s/x", outside);
	xcall(rename(name, "moved"), "rename in");
	expect(&mainx, PRESTO_EV_MOVED_IN, 0, "moved", NULL, ino_x);
	snprintf(name, sizeof(name), "%s/x2", outside);
	xcall(rename("moved", name), "rename out");
	expect(&mainx, PRESTO_EV_MOVED_OUT, 0, "moved", NULL, ino_x);
	ino = ino_of(".replicator/kml2");
	xcall(rename(".replicator/kml2", "staged"), "rename from private");
	expect(&mainx, PRESTO_EV_MOVED_IN, 0, "staged", NULL, ino);

	/* 18. truncating open counts as a modification */
	write_file("d1/f1r", NULL, O_TRUNC);
	expect(&mainx, PRESTO_EV_CLOSE_WRITE, 0, "d1/f1r", NULL, ino_f1);
	expect(&subx, PRESTO_EV_CLOSE_WRITE, 0, "f1r", NULL, ino_f1);

	/* 19. write, rename while open, close: close reports the new name */
	{
		int wfd = open("f4", O_WRONLY | O_CREAT, 0644);
		struct stat sb;

		if (wfd < 0 || write(wfd, "4", 1) != 1)
			die("f4");
		fstat(wfd, &sb);
		ino_f4 = sb.st_ino;
		xcall(rename("f4", "f5"), "rename f4");
		close(wfd);
	}
	expect(&mainx, PRESTO_EV_CREATE, 0, "f4", NULL, ino_f4);
	expect(&mainx, PRESTO_EV_RENAME, 0, "f4", "f5", ino_f4);
	expect(&mainx, PRESTO_EV_CLOSE_WRITE, 0, "f5", NULL, ino_f4);

	/* 20. rename over an existing file, unlink of a hard link */
	write_file("f6", "six\n", O_CREAT | O_EXCL);
	ino = ino_of("f6");
	xcall(rename("f6", "f5"), "rename over");
	xcall(unlink("hl"), "unlink hl");
	expect(&mainx, PRESTO_EV_CREATE, 0, "f6", NULL, ino);
	expect(&mainx, PRESTO_EV_CLOSE_WRITE, 0, "f6", NULL, ino);
	expect(&mainx, PRESTO_EV_RENAME, 0, "f6", "f5", ino);
	expect(&mainx, PRESTO_EV_UNLINK, 0, "hl", NULL, ino_a);

	/* 21. exchange of two names: two RENAME records; an xattr change */
	{
		uint64_t i5 = ino_of("f5"), i3 = ino_of("f3");

		xcall(renameat2(AT_FDCWD, "f5", AT_FDCWD, "f3",
				RENAME_EXCHANGE), "exchange");
		expect(&mainx, PRESTO_EV_RENAME, 0, "f5", "f3", i5);
		expect(&mainx, PRESTO_EV_RENAME, 0, "f3", "f5", i3);
	}
	xcall(setxattr("f3", "user.k", "v", 1, 0), "setxattr");
	expect(&mainx, PRESTO_EV_SETATTR, 0, "f3", NULL, ino_of("f3"));

	/* 21b. a file written outside, moved in while open, written, closed */
	{
		int wfd;

		snprintf(name, sizeof(name), "%s/w", outside);
		wfd = open(name, O_WRONLY | O_CREAT, 0644);
		if (wfd < 0 || write(wfd, "a", 1) != 1)
			die("outside/w");
		xcall(rename(name, "w"), "rename w in");
		if (write(wfd, "b", 1) != 1)
			die("write w");
		ino = ino_of("w");
		close(wfd);
	}
	expect(&mainx, PRESTO_EV_MOVED_IN, 0, "w", NULL, ino);
	expect(&mainx, PRESTO_EV_CLOSE_WRITE, 0, "w", NULL, ino);

	/* 22. end marker */
	xcall(mkdir("end", 0755), "mkdir end");
	expect(&mainx, PRESTO_EV_MKDIR, PRESTO_F_ISDIR, "end", NULL,
	       ino_of("end"));

	mainl.raw = malloc(1 << 16);
	mainl.rawcap = 1 << 16;
	/* small reads: several records per read, records never split */
	drain(fd, &mainl, t0, 200);
	drain(fd_sub, &subl, t0, 4096);
	print_events(&mainl);
	print_events(&subl);
	compare("main", &mainl, &mainx);
	compare("sub", &subl, &subx);
	hexdump("main", mainl.raw, mainl.rawlen);

	check(read(fd, name, 8) < 0 && errno == EINVAL, "read-short-einval",
	      NULL);
	check(read(fd, name, sizeof(name)) < 0 && errno == EAGAIN,
	      "read-empty-eagain", NULL);

	/* Disarm: further events are not queued, read returns EOF. */
	check(!ioctl(fd, PRESTO_IOC_DISARM), "disarm", NULL);
	xcall(mkdir("after-disarm", 0755), "mkdir after-disarm");
	memset(&st, 0, sizeof(st));
	check(!ioctl(fd, PRESTO_IOC_STATS, &st) && st.armed == 0,
	      "stats-disarmed", NULL);
	check(read(fd, name, sizeof(name)) == 0, "read-disarmed-eof", NULL);
	close(fd_sub);

	/* Overflow: a 4 KiB ring and a flood of events. */
	fd_ov = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd_ov < 0)
		die("open overflow");
	t0 = now_ns();
	check(arm(fd_ov, vol, PRESTO_RING_MIN, 0) == 0, "arm-small-ring", NULL);
	xcall(mkdir("ov", 0755), "mkdir ov");
	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "ov/f%03d", i);
		write_file(name, NULL, O_CREAT);
	}
	memset(&st, 0, sizeof(st));
	err = ioctl(fd_ov, PRESTO_IOC_STATS, &st);
	check(!err && st.lost > 0 && st.pending_lost == st.lost, "stats-lost",
	      "queued=%llu lost=%llu", (unsigned long long)st.queued,
	      (unsigned long long)st.lost);
	pfd = (struct pollfd){ .fd = fd_ov, .events = POLLIN };
	check(poll(&pfd, 1, 0) == 1, "poll-overflow", NULL);
	drain(fd_ov, &ovl, t0, 1 << 16);
	{
		int normal = 0, overflows = 0, order_ok = 1;
		uint64_t lost = 0;

		for (i = 0; i < ovl.n; i++) {
			if (ovl.ev[i].type == PRESTO_EV_OVERFLOW) {
				overflows++;
				lost += ovl.ev[i].aux;
				if (i != ovl.n - 1)
					order_ok = 0;
			} else {
				normal++;
				if (overflows)
					order_ok = 0;
			}
		}
		sum = normal + (int)lost;
		check(overflows == 1 && order_ok && sum == 301 &&
		      lost == st.lost && !ovl.bad, "overflow",
		      "records=%d overflows=%d lost=%llu sum=%d (want 301)",
		      normal, overflows, (unsigned long long)lost, sum);
	}
	/* after the overflow the stream resumes */
	ovl.n = 0;
	write_file("ov/after", NULL, O_CREAT);
	drain(fd_ov, &ovl, t0, 1 << 16);
	check(ovl.n == 1 && ovl.ev[0].type == PRESTO_EV_CREATE &&
	      !strcmp(ovl.ev[0].path, "ov/after"), "overflow-resume",
	      "n=%d", ovl.n);

	overflow88(vol);
	hostile_reads(vol);
	truncations(vol);
	mmap_writes(vol, "mmap-writes-reported");
	xcall(mkdir(RAMVOL, 0755), "mkdir " RAMVOL);
	xcall(mount("none", RAMVOL, "ramfs", 0, NULL), "mount ramfs");
	xcall(chdir(RAMVOL), "chdir " RAMVOL);
	mmap_writes(RAMVOL, "mmap-writes-reported-ramfs");
	xcall(chdir(vol), "chdir vol");
	xcall(umount(RAMVOL), "umount ramfs");
	review_cases(vol, mnt);
	blind_spots(vol, mnt);

	stress(vol);

	/* Arm/close cycles, half of them reporting every close. */
	write_file("cyc", NULL, O_CREAT);
	usleep(TICK_US);	/* no close reported for a file left unchanged */
	{
		static struct evlist cyc = { .name = "cycle" };
		int bad = 0;

		for (i = 0; i < 40; i++) {
			int cfd = open(PRESTO_DEVICE,
				       O_RDONLY | O_NONBLOCK | O_CLOEXEC);
			int all = i & 1;

			if (cfd < 0 ||
			    arm(cfd, vol, 0, all ? PRESTO_ARM_ALL_CLOSE_WRITE : 0)) {
				bad++;
				continue;
			}
			write_file("cyc", NULL, 0);
			cyc.n = 0;
			cyc.last_seq = 0;
			drain(cfd, &cyc, t0, 4096);
			if (all ? cyc.n != 1 ||
				  cyc.ev[0].type != PRESTO_EV_CLOSE_WRITE ||
				  cyc.ev[0].flags != PRESTO_F_UNVERIFIED ||
				  strcmp(cyc.ev[0].path, "cyc") :
				  cyc.n != 0)
				bad++;
			close(cfd);
		}
		check(!bad, "arm-close-cycles", "%d of 40 bad", bad);
	}

	/* The ring shows in vmallocinfo while armed, and not after close. */
	check(vmalloc_presto() > 0, "vmalloc-while-armed", NULL);

	/* Unload: busy while a reader is open, fine after. */
	err = syscall(SYS_delete_module, "presto", O_NONBLOCK);
	check(err && (errno == EWOULDBLOCK || errno == EBUSY),
	      "rmmod-busy-while-open", err ? strerror(errno) : "unloaded");
	close(fd_ov);
	close(fd);
	check(vmalloc_presto() == 0, "vmalloc-freed", NULL);
	err = syscall(SYS_delete_module, "presto", O_NONBLOCK);
	check(!err, "rmmod", err ? strerror(errno) : NULL);
	check(access(PRESTO_DEVICE, F_OK) != 0, "device-gone", NULL);

	xcall(chdir("/"), "chdir /");
	err = umount2(mnt, 0);
	check(!err, "umount", err ? strerror(errno) : NULL);
	check(dmesg_clean(), "dmesg-clean", NULL);

	printf("PRESTO-TEST: %d passed, %d failed\n", passed, failed);
	fflush(stdout);
	return failed ? 1 : 0;
}
