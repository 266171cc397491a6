"""Launching MXNet ps-lite jobs (scheduler, servers, workers) locally or over ssh; a worker-side step watchdog."""

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import namedtuple

__all__ = ["WorkerResult", "LaunchError", "WorkerFailedError", "LaunchTimeoutError", "free_port",
           "dmlc_env", "launch_local", "read_hosts", "ssh_commands", "launch_ssh", "StepWatchdog",
           "main"]

#: What one worker did: its launch index (not ps-lite's rank, which is given in order of
#: arrival at the scheduler), exit code (negative: killed by that signal), its output (``None``
#: when not captured), and whether the launcher itself stopped it.
WorkerResult = namedtuple("WorkerResult", "index pid returncode stdout stderr killed_by_launcher")

#: The command scheduler and server processes run: importing mxnet with DMLC_ROLE=server or
#: scheduler enters ps-lite's server loop (mxnet.kvstore_server) and exits when the job ends.
SERVER_CODE = "import mxnet"

_TAIL = 2000


class LaunchError(RuntimeError):
    """A distributed job did not finish cleanly; ``results`` holds every worker's outcome."""

    def __init__(self, message, results=()):
        super().__init__(message)
        self.results = list(results)


class WorkerFailedError(LaunchError):
    """A worker (or the scheduler / a server) exited with an error; the rest were stopped."""


class LaunchTimeoutError(LaunchError, TimeoutError):
    """The job ran past its timeout; every process was stopped."""


def free_port(host="127.0.0.1"):
    """A TCP port that was free on `host` a moment ago (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def dmlc_env(role, root_uri, root_port, num_workers, num_servers, node_host=None, extra=None):
    """The DMLC_* variables ps-lite reads in every process of a job.

    Parameters
    ----------
    role : {'scheduler', 'server', 'worker'}
    root_uri, root_port : str, int
        Where the scheduler listens (every process connects there first).
    num_workers, num_servers : int
    node_host : str, optional
        The address this process announces to the others (``DMLC_NODE_HOST``); without it ps-lite
        picks the first non-loopback interface, which is wrong for a localhost job.
    extra : dict, optional
        More variables (e.g. ``PS_VERBOSE``, ``PS_HEARTBEAT_INTERVAL``).

    Returns
    -------
    dict of str to str
    """
    if role not in ("scheduler", "server", "worker"):
        raise ValueError("role must be scheduler, server or worker, got %r" % (role,))
    env = {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": str(root_uri), "DMLC_PS_ROOT_PORT": str(int(root_port)),
           "DMLC_NUM_WORKER": str(int(num_workers)), "DMLC_NUM_SERVER": str(int(num_servers))}
    if node_host:
        env["DMLC_NODE_HOST"] = str(node_host)
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env


def _check_counts(num_workers, num_servers):
    if int(num_workers) < 1 or int(num_servers) < 1:
        raise ValueError("need at least one worker and one server, got %r workers, %r servers"
                         % (num_workers, num_servers))


def _signal_name(code):
    if code is not None and code < 0:
        try:
            return "signal %s" % signal.Signals(-code).name
        except ValueError:
            return "signal %d" % -code
    return "exit code %s" % code


class _Proc:
    """One child in its own process group, its output going to files (never a pipe that fills)."""

    def __init__(self, role, index, argv, env, cwd, capture, tmpdir):
        self.role, self.index, self.argv = role, index, argv
        self.name = role if role == "scheduler" else "%s %d" % (role, index)
        self.killed = False
        self._files = None
        if capture:
            base = os.path.join(tmpdir, "%s-%d" % (role, index))
            self._files = (open(base + ".out", "w+b"), open(base + ".err", "w+b"))
            out, err = self._files
        else:
            out = err = None
        self.popen = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=err, start_new_session=True)

    def poll(self):
        return self.popen.poll()

    def kill(self, grace=2.0):
        """SIGTERM to the whole process group, SIGKILL after `grace` seconds."""
        if self.popen.poll() is not None:
            self._killpg(signal.SIGKILL)   # stray grandchildren of a finished child
            return
        self.killed = True
        self._killpg(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        self._killpg(signal.SIGKILL)
        self.popen.wait()

    def _killpg(self, sig):
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def output(self):
        if self._files is None:
            return None, None
        texts = []
        for f in self._files:
            f.flush()
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
        return tuple(texts)

    def close(self):
        if self._files:
            for f in self._files:
                f.close()


def _tail(text, n=_TAIL):
    text = (text or "").rstrip()
    return text if len(text) <= n else "..." + text[-n:]


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def _supervise(procs, timeout, server_grace, poll_interval=0.05):
    """Wait for the workers; on any failure or the timeout stop everything. Returns results."""
    # SIGTERM to the launcher (a CI timeout, `kill`) must still stop the children's groups.
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_exit)
        try:
            return _supervise_loop(procs, timeout, server_grace, poll_interval)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return _supervise_loop(procs, timeout, server_grace, poll_interval)


def _supervise_loop(procs, timeout, server_grace, poll_interval):
    workers = [p for p in procs if p.role == "worker"]
    others = [p for p in procs if p.role != "worker"]
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    failed = None
    try:
        while True:
            # (The scheduler and servers exit 0 once every worker has finalised, which can be
            # before the worker processes themselves are gone: only a failure counts.)
            codes = [p.poll() for p in workers]
            bad = [p for p, c in zip(workers, codes) if c not in (None, 0)]
            bad += [p for p in others if p.poll() not in (None, 0)]
            if bad:
                failed = bad[0]
                break
            if None not in codes:
                break
            if deadline is not None and time.monotonic() > deadline:
                failed = "timeout"
                break
            time.sleep(poll_interval)
        if failed is None:
            # Workers done: the scheduler and servers leave on their own once every worker finalised.
            end = time.monotonic() + server_grace
            while any(p.poll() is None for p in others) and time.monotonic() < end:
                time.sleep(poll_interval)
    finally:
        for p in procs:          # whatever is left (and every process group's stragglers)
            p.kill()
    results = []
    for p in workers:
        out, err = p.output()
        results.append(WorkerResult(p.index, p.popen.pid, p.popen.returncode, out, err, p.killed))
    for p in procs:
        p.close()
    if failed == "timeout":
        raise LaunchTimeoutError(
            "distributed job did not finish within %ss; stopped every process (%s)%s"
            % (timeout, ", ".join(p.name for p in procs), _details(workers, results)), results)
    if failed is not None:
        lost = [p.name for p in procs if p.killed]
        raise WorkerFailedError(
            "%s (pid %d) failed with %s; a dist_sync job cannot go on without it (ps-lite does not "
            "replace lost nodes), so the launcher stopped %s%s"
            % (failed.name, failed.popen.pid, _signal_name(failed.popen.returncode),
               ", ".join(lost) or "nothing else", _details(workers, results)), results)
    return results


def _details(workers, results):
    lines = []
    for p, r in zip(workers, results):
        if r.stderr:
            lines.append("--- %s stderr (%s%s):\n%s" % (p.name, _signal_name(r.returncode),
                                                         ", stopped by launcher" if r.killed_by_launcher else "",
                                                         _tail(r.stderr)))
    return ("\n" + "\n".join(lines)) if lines else ""


def launch_local(command, num_workers, num_servers=1, timeout=600, port=None, env=None, cwd=None,
                 capture=True, server_command=None, server_grace=10.0):
    """Run a ps-lite job on this machine: one scheduler, `num_servers` servers, `num_workers` workers.

    Every process is a child in its own process group with the DMLC_* environment
    (:func:`dmlc_env`) on ``127.0.0.1`` and a free port. Workers run `command`; the scheduler
    and servers run ``python -c "import mxnet"`` (mxnet enters ps-lite's server loop at import
    when ``DMLC_ROLE`` is not ``worker``). The launcher waits for the workers; when one fails, or
    the scheduler or a server dies, or `timeout` passes, it stops every process group (SIGTERM,
    then SIGKILL) and raises. Every child is gone when this function returns or raises.

    Parameters
    ----------
    command : list of str or str
        The worker command (a string is split with :func:`shlex.split`). Each worker also gets
        ``GLUON_CAFFE_WORKER_INDEX`` (its launch index; ps-lite's ``kv.rank`` is what to shard by).
    num_workers, num_servers : int
    timeout : float or None
        Seconds for the whole job.
    port : int, optional
        The scheduler's port (default: a free one).
    env : dict, optional
        Extra environment for every process (on top of ``os.environ``).
    cwd : str, optional
    capture : bool
        Collect the workers' stdout/stderr (in temporary files) into the results; otherwise every
        process writes to this process's stdout/stderr.
    server_command : list of str, optional
        What the scheduler and servers run (default ``[sys.executable, "-c", "import mxnet"]``).
    server_grace : float
        Seconds the scheduler and servers get to exit by themselves after the last worker.

    Returns
    -------
    list of WorkerResult
        One per worker, in launch order; all return codes are 0.

    Raises
    ------
    WorkerFailedError
        A worker exited non-zero or was killed, or the scheduler or a server died. The message
        names the process and the signal or exit code and ends with the workers' stderr tails;
        ``.results`` holds every worker's outcome.
    LaunchTimeoutError
        The job ran past `timeout`.

    Examples
    --------
    >>> launch_local([sys.executable, "train.py"], num_workers=2, num_servers=1, timeout=300)
    """
    _check_counts(num_workers, num_servers)
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if not argv:
        raise ValueError("empty worker command")
    server_argv = list(server_command) if server_command else [sys.executable, "-c", SERVER_CODE]
    port = int(port) if port else free_port()
    base = dict(os.environ)
    for key in list(base):     # a launcher started inside another job must not leak its role
        if key.startswith("DMLC_"):
            del base[key]
    base.update({str(k): str(v) for k, v in (env or {}).items()})
    plan = [("scheduler", 0, server_argv)] + [("server", i, server_argv) for i in range(num_servers)] \
        + [("worker", i, argv) for i in range(num_workers)]
    procs = []
    with tempfile.TemporaryDirectory(prefix="gluon_caffe_dist_") as tmpdir:
        try:
            for role, index, cmd in plan:
                child_env = dict(base)
                child_env.update(dmlc_env(role, "127.0.0.1", port, num_workers, num_servers,
                                          node_host="127.0.0.1"))
                if role == "worker":
                    child_env["GLUON_CAFFE_WORKER_INDEX"] = str(index)
                procs.append(_Proc(role, index, cmd, child_env, cwd, capture or role != "worker", tmpdir))
        except BaseException:
            for p in procs:
                p.kill()
                p.close()
            raise
        try:
            return _supervise(procs, timeout, server_grace)
        except KeyboardInterrupt:
            for p in procs:
                p.kill()
                p.close()
            raise


# ------------------------------------------------------------------------------ ssh clusters

def read_hosts(path):
    """Hosts of a hosts file: one ``[user@]host[:ssh_port]`` a line; ``#`` comments, blanks skipped.

    Returns
    -------
    list of (str, int or None)
        ``(destination, ssh_port)`` pairs.
    """
    hosts = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            dest, _, sport = line.partition(":")
            hosts.append((dest, int(sport) if sport else None))
    if not hosts:
        raise ValueError("hosts file %r lists no hosts" % (path,))
    return hosts


def _address(dest):
    return dest.rsplit("@", 1)[-1]


def ssh_commands(hosts, command, num_workers, num_servers=1, port=9091, cwd=None, env=None,
                 python="python3", ssh=("ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new")):
    """The ssh command lines of a ps-lite job spread over `hosts` (built, not run).

    The scheduler runs on the first host (every process connects to it at ``host:port``),
    servers and workers go round-robin over the hosts. Each remote command sets the DMLC_*
    variables (with ``DMLC_NODE_HOST`` the host's own address), changes to `cwd` and ``exec``\\ s
    the program, so that killing the ssh client's session ends it (ssh ``-tt`` is not used:
    a remote process is stopped when its ssh connection closes only if it reads stdin or gets
    SIGHUP; :func:`launch_ssh` therefore also kills the local ssh process groups).

    Parameters
    ----------
    hosts : list of str or (str, int)
        ``[user@]host`` or ``([user@]host, ssh_port)``.
    command : list of str or str
        The worker command, run on the remote host.
    num_workers, num_servers, port : int
    cwd : str, optional
        Remote working directory (default: this process's).
    env : dict, optional
        Extra remote environment for every process.
    python : str
        The remote Python (for the scheduler and servers).
    ssh : sequence of str
        The ssh client and its options.

    Returns
    -------
    list of (str, int, str, list of str)
        ``(role, index, host, argv)`` in start order: scheduler, servers, workers.
    """
    _check_counts(num_workers, num_servers)
    hosts = [(h, None) if isinstance(h, str) else (h[0], h[1]) for h in hosts]
    if not hosts:
        raise ValueError("no hosts")
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    cwd = cwd or os.getcwd()
    root = _address(hosts[0][0])
    plan = [("scheduler", 0, hosts[0])]
    plan += [("server", i, hosts[i % len(hosts)]) for i in range(num_servers)]
    plan += [("worker", i, hosts[i % len(hosts)]) for i in range(num_workers)]
    out = []
    for role, index, (dest, sport) in plan:
        variables = dmlc_env(role, root, port, num_workers, num_servers, node_host=_address(dest), extra=env)
        if role == "worker":
            variables["GLUON_CAFFE_WORKER_INDEX"] = str(index)
        program = argv if role == "worker" else [python, "-c", SERVER_CODE]
        remote = "cd %s && %s exec %s" % (
            shlex.quote(cwd), " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(variables.items())),
            " ".join(shlex.quote(a) for a in program))
        line = list(ssh) + (["-p", str(sport)] if sport else []) + [dest, remote]
        out.append((role, index, dest, line))
    return out


def launch_ssh(hosts, command, num_workers, num_servers=1, port=9091, cwd=None, env=None, timeout=None,
               capture=False, python="python3", server_grace=10.0):
    """Run a ps-lite job over ssh on the machines of `hosts` (see :func:`ssh_commands`).

    The local ssh clients are supervised like :func:`launch_local`'s processes: a failed worker
    or the timeout stops them all. Needs password-less ssh (``BatchMode``) to every host, the same
    code and data path on each, and the scheduler's `port` open between the hosts.

    Returns
    -------
    list of WorkerResult
    """
    if isinstance(hosts, (str, os.PathLike)):
        hosts = read_hosts(hosts)
    lines = ssh_commands(hosts, command, num_workers, num_servers, port, cwd, env, python)
    procs = []
    with tempfile.TemporaryDirectory(prefix="gluon_caffe_dist_") as tmpdir:
        try:
            for role, index, _, argv in lines:
                procs.append(_Proc(role, index, argv, dict(os.environ), None, capture or role != "worker", tmpdir))
        except BaseException:
            for p in procs:
                p.kill()
                p.close()
            raise
        return _supervise(procs, timeout, server_grace)


# ------------------------------------------------------------------------------ worker side

class StepWatchdog:
    """Ends this worker with a clear message when a training step takes longer than `timeout`.

    ps-lite has no failure detection a worker can see: when a peer dies, ``dist_sync`` pushes and
    pulls wait for it forever. :func:`launch_local` stops the job from outside; this is the same
    guarantee from inside a worker that no launcher supervises (a cluster scheduler, ssh).

    Parameters
    ----------
    timeout : float
        Seconds allowed between :meth:`feed` calls (give the first step, which initialises the
        kvstore, enough too).
    exit_code : int
        The process's exit status when it fires.

    Examples
    --------
    >>> with StepWatchdog(120) as dog:
    ...     for x, y in batches:
    ...         train_step(x, y); dog.feed()
    """

    def __init__(self, timeout, exit_code=3):
        self.timeout, self.exit_code = float(timeout), int(exit_code)
        self._last = time.monotonic()
        self._steps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="gluon_caffe-step-watchdog", daemon=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        """Start watching (the clock starts now)."""
        self._last = time.monotonic()
        self._thread.start()
        return self

    def feed(self):
        """A step finished."""
        self._last = time.monotonic()
        self._steps += 1

    def stop(self):
        """Stop watching."""
        self._stop.set()

    def _watch(self):
        while not self._stop.wait(min(1.0, self.timeout / 4)):
            idle = time.monotonic() - self._last
            if idle > self.timeout:
                sys.stderr.write(
                    "gluon_caffe.distributed: no training step finished for %.0fs (after %d steps); a peer "
                    "worker, server or the scheduler is probably gone and ps-lite waits for it forever. "
                    "Exiting with status %d.\n" % (idle, self._steps, self.exit_code))
                sys.stderr.flush()
                os._exit(self.exit_code)


# ------------------------------------------------------------------------------ CLI

def main(argv=None):
    """``python -m gluon_caffe.distributed -n 2 -s 1 [-H hosts] -- python train.py ...``"""
    parser = argparse.ArgumentParser(
        prog="python -m gluon_caffe.distributed",
        description="Run a command as the workers of an MXNet ps-lite job (kvstore dist_sync / dist_async), "
                    "with a scheduler and servers, on this machine or over ssh.")
    parser.add_argument("-n", "--num-workers", type=int, required=True)
    parser.add_argument("-s", "--num-servers", type=int, default=1)
    parser.add_argument("-H", "--hostfile", help="one [user@]host[:ssh_port] a line; without it all runs here")
    parser.add_argument("-p", "--port", type=int, default=None, help="scheduler port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds for the whole job")
    parser.add_argument("--dry-run", action="store_true", help="print the ssh command lines and exit")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the worker command (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the worker command after --")
    try:
        if args.hostfile:
            if args.dry_run:
                for role, index, host, line in ssh_commands(read_hosts(args.hostfile), command, args.num_workers,
                                                            args.num_servers, args.port or 9091):
                    print("# %s %d on %s\n%s" % (role, index, host, " ".join(shlex.quote(a) for a in line)))
                return 0
            launch_ssh(args.hostfile, command, args.num_workers, args.num_servers, args.port or 9091,
                       timeout=args.timeout)
        else:
            launch_local(command, args.num_workers, args.num_servers, timeout=args.timeout, port=args.port,
                         capture=False)
    except LaunchError as e:
        print("gluon_caffe.distributed: %s" % str(e).splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
