// SPDX-License-Identifier: GPL-2.0
/*
 * presto_bench - figures for presto.ko, run inside the QEMU guest (not a test).
 *
 *   presto_bench presto.ko mountpoint
 *
 * 1. Handler cost: a file-heavy loop (create, write 64 bytes, close, rename,
 *    unlink) in the volume, the module loaded but not armed vs armed.  The
 *    handler runs in the writer's own task, so the armed rounds use the
 *    largest ring and no concurrent reader (it is drained, and checked for
 *    losses, after the clock stops): the time measured is the writer's.
 *    Rounds come in pairs whose order alternates (off-on, on-off), so that
 *    drift cancels; the figure is the median of the per-pair ratios.
 * 2. Reader throughput: the same loop as fast as it goes at the default ring
 *    size, a reader draining with 64 KiB reads: events read per second and
 *    events lost.
 *
 * Prints "PRESTO-BENCH <name> <value> <unit>" lines.  Under TCG emulation the
 * absolute times are slow; the armed/unarmed ratio is what to read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "presto_abi.h"

#define LOOP_FILES 2000
#define ROUNDS 15

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die(const char *what)
{
	printf("PRESTO-BENCH-FAIL %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

/* The workload: 4 events per file (CREATE, CLOSE_WRITE, RENAME, UNLINK). */
static uint64_t workload(int round)
{
	char a[64], b[64];
	uint64_t t0 = now_ns();
	int i, fd;

	for (i = 0; i < LOOP_FILES; i++) {
		snprintf(a, sizeof(a), "w%d_%d", round, i);
		snprintf(b, sizeof(b), "m%d_%d", round, i);
		fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, "0123456789abcdef0123456789abcdef"
				    "0123456789abcdef0123456789abcdef", 64) != 64)
			die("write");
		close(fd);
		if (rename(a, b) || unlink(b))
			die("rename/unlink");
	}
	return now_ns() - t0;
}

static int arm(int fd, const char *path, uint32_t ring)
{
	struct presto_arm a = { .size = sizeof(a), .path = (uintptr_t)path,
				.ring_bytes = ring };

	return ioctl(fd, PRESTO_IOC_ARM, &a) ? -errno : 0;
}

/*
 * A reader process draining `fd` until killed, writing its count of records
 * so far to `report` after each read; returns its pid.
 */
static pid_t reader(int fd, int report)
{
	static char buf[1 << 16];
	pid_t pid = fork();
	uint64_t events = 0;
	ssize_t n;

	if (pid)
		return pid;
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t at = 0; at < n;
		     at += ((struct presto_event *)(buf + at))->rec_len)
			events++;
		if (write(report, &events, sizeof(events)) < 0)
			break;
	}
	_exit(0);
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* One armed round: the largest ring, no reader while the clock runs. */
static uint64_t armed_round(const char *vol, int round)
{
	static char buf[1 << 16];
	struct presto_stats st = { 0 };
	uint64_t t;
	int fd = open(PRESTO_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0 || arm(fd, vol, PRESTO_RING_MAX))
		die("arm");
	t = workload(round);
	if (ioctl(fd, PRESTO_IOC_STATS, &st))
		die("stats");
	if (st.lost) {
		errno = EOVERFLOW;
		die("armed round lost events");
	}
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	return t;
}

int main(int argc, char **argv)
{
	uint64_t off[ROUNDS], on[ROUNDS], t, events = 0, got;
	double ratio[ROUNDS];
	struct presto_stats st = { 0 };
	char vol[256];
	int kfd, fd, i, pipefd[2];
	pid_t pid;

	if (argc != 3)
		return 2;
	kfd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (kfd < 0 || syscall(SYS_finit_module, kfd, "", 0))
		die("finit_module");
	snprintf(vol, sizeof(vol), "%s/vol", argv[2]);
	if (mkdir(vol, 0755) || chdir(vol))
		die("vol");
	workload(99);	/* warm the caches */

	/* 1. handler cost: pairs of rounds, in alternating order */
	for (i = 0; i < ROUNDS; i++) {
		if (i & 1) {
			on[i] = armed_round(vol, 2 * i);
			off[i] = workload(2 * i + 1);
		} else {
			off[i] = workload(2 * i);
			on[i] = armed_round(vol, 2 * i + 1);
		}
		ratio[i] = (double)on[i] / (double)off[i];
	}
	qsort(off, ROUNDS, sizeof(off[0]), cmp);
	qsort(on, ROUNDS, sizeof(on[0]), cmp);
	qsort(ratio, ROUNDS, sizeof(ratio[0]), cmp_double);
	printf("PRESTO-BENCH loop-unarmed %llu us (median of %d, %d files x 4 events)\n",
	       (unsigned long long)off[ROUNDS / 2] / 1000, ROUNDS, LOOP_FILES);
	printf("PRESTO-BENCH loop-armed %llu us\n",
	       (unsigned long long)on[ROUNDS / 2] / 1000);
	printf("PRESTO-BENCH overhead %.1f %% (median of %d pairs; quartiles %.1f %% .. %.1f %%)\n",
	       100.0 * (ratio[ROUNDS / 2] - 1.0), ROUNDS,
	       100.0 * (ratio[ROUNDS / 4] - 1.0),
	       100.0 * (ratio[3 * ROUNDS / 4] - 1.0));

	/* 2. reader throughput at the default ring size */
	fd = open(PRESTO_DEVICE, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || arm(fd, vol, 0) || pipe(pipefd))
		die("arm 2");
	pid = reader(fd, pipefd[1]);
	close(pipefd[1]);
	t = workload(1000);
	usleep(200000);	/* let the reader catch up */
	if (ioctl(fd, PRESTO_IOC_STATS, &st))
		die("stats");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	while (read(pipefd[0], &got, sizeof(got)) == sizeof(got))
		events = got;
	printf("PRESTO-BENCH events-read %llu of %d (lost %llu)\n",
	       (unsigned long long)events, 4 * LOOP_FILES, (unsigned long long)st.lost);
	printf("PRESTO-BENCH events-per-second %.0f (producer at full speed, ring %u bytes)\n",
	       (double)events * 1e9 / (double)t, PRESTO_RING_DEFAULT);
	fflush(stdout);
	return 0;
}
