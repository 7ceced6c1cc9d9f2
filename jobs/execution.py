"""The worker: RQ's SimpleWorker running jobs (jobs.rqjob) in-process, with heartbeats, counters, jobs taken
ahead and their ends written with the next take (jobs.dequeue), exception-aware retries, and a shutdown
deadline after which running jobs are requeued.

Every extension rides on a method RQ calls with its own lifecycle pipeline, or on the next take, so the
timeline and the counters cost no extra round trip.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import redis
from rq import Queue as RQQueue
from rq.exceptions import DeserializationError, StopRequested
from rq.job import JobStatus
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.suspension import is_suspended
from rq.utils import current_timestamp, now
from rq.worker import SimpleWorker, WorkerStatus
from rq.worker_registration import clean_worker_registry

from . import bodies, bookkeeping, catalog, index, timeline
from .alone import Alone
from .connection import Context, OutageLog
from .dequeue import (
    Ahead,
    Failure,
    Finish,
    JobQueue,
    MakeWay,
    Rider,
    Sent,
    Taker,
    give_back,
    heartbeat_deadline,
    send,
    started_key,
    taking_for,
)
from .due import LOCK_RETRY, Scheduler
from .errors import JobsError, WorkerInterrupted
from .prefetch import HOLD, Prefetched
from .retries import is_retryable
from .rqjob import Job, error_summary, pending_ttl, put_back, success_count
from .rqtimes import format_time
from .timeouts import JobTimeout

log = logging.getLogger("jobs.worker")
INTERRUPT_SIGNAL = signal.SIGUSR1
HOST = socket.gethostname()


TALLY_INTERVAL = 1.0  # seconds between writes of the worker's counters and state
# Added to the heartbeat deadline (whole seconds) of a started entry once a tick has seen its job run: the
# orphan sweep then knows the job had started. The entries of jobs taken ahead and not run yet, and of
# jobs in their first tick, have whole scores: a job among them may never have started.
RUNNING_MARK = 0.5
SUSPENSION_CHECK = 1.0  # seconds between checks for `rq suspend`


@dataclass
class _Finishing:
    """A job whose end has not been written yet, and what RQ's own path needs to finish it."""

    rider: Rider
    job: Job
    queue: RQQueue
    registry: StartedJobRegistry
    counts: list  # its counts (timeline.counts_held), made once its end is written
    exc_string: str | None = None  # a failure's traceback; None: a success


class Worker(SimpleWorker):
    """One worker process: runs jobs in-process (no fork per job), heartbeats while a job runs so a dead
    worker's job is found within the orphan timeout, and requeues its job if stopped at the deadline."""

    death_penalty_class = JobTimeout
    log_result_lifespan = False  # RQ's "result is kept for N seconds" line after every job

    def __init__(self, queues, context: Context, alone: Alone | None = None, **kwargs):
        """`alone`: the process's other workers (threads), which make way for a job run alone."""
        kwargs.setdefault("name", timeline.worker_name(HOST, os.getpid(), uuid.uuid4().hex[:8]))
        super().__init__(
            queues,
            connection=bookkeeping.client(context.redis),  # its transactions go through when Redis is full
            job_class=Job,
            queue_class=JobQueue,
            serializer=JSONSerializer,
            default_result_ttl=context.settings.succeeded_ttl,
            **kwargs,
        )
        self.context = context
        self._running: tuple | None = None  # (started registry, execution) of the job being run
        self._performing: tuple[Job, RQQueue] | None = None  # the job being run, and its queue
        self._seen_running: str | None = None  # the started entry last marked as running (RUNNING_MARK)
        self._beats = threading.Event()
        self._heartbeats: threading.Thread | None = None
        self._written_state: str | None = None
        self._finishing: list[_Finishing] = []  # ends of jobs run since the last take, sent with the next
        self._prefetched = Prefetched()
        self._ahead: Ahead | None = None  # a take sent before this worker needs its jobs
        self._current_job: str | None = None  # the job being run, as the heartbeat thread writes it
        self._written_job: str | None = None
        self._alone = alone
        make_way = (lambda: alone.claimed_by_another(self)) if alone else (lambda: False)
        self._taker = Taker(
            self.name, int(context.settings.orphan_timeout), lambda: self._stop_requested, make_way
        )
        if alone:
            alone.join(self)
        self._next_suspension_check = 0.0
        self._next_mover_try: float | None = None  # None: this worker keeps no mover running
        self._beat_outage = OutageLog(log, f"worker {self.name}: heartbeat")

    def _set_connection(self, connection):
        """Keep the connection's command timeout. RQ raises it to its own dequeue wait (over 400 s), so a
        dead link would block a worker for minutes; our dequeue never waits more than a second at a time."""
        return connection

    def _start_scheduler(self, burst=False, logging_level="INFO", *args, **kwargs):
        """RQ's own, with the outage-proof Scheduler above. Not in burst mode, a worker that gets none of
        its queues' locks, or whose mover dies, tries again every LOCK_RETRY (`_keep_mover`)."""
        self.scheduler = Scheduler(
            self.queues, connection=self.connection, logging_level=logging_level, serializer=self.serializer
        )
        if not burst:
            self._next_mover_try = time.monotonic() + LOCK_RETRY
            self.scheduler.acquire_locks(auto_start=True)
            return
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()

    def _keep_mover(self) -> None:
        """Every LOCK_RETRY, while this worker's mover of due jobs is not running (another worker's held
        the locks, or it died), try for its queues' locks and start it on getting any: RQ's worker tries
        every 10 minutes, and delayed jobs and retries would wait that long when the worker whose mover
        held the locks stops or dies. From the worker's loop: the mover is forked, which the heartbeat
        thread must not do behind the back of the thread running the worker."""
        if self._next_mover_try is None or self._stop_requested or time.monotonic() < self._next_mover_try:
            return
        self._next_mover_try = time.monotonic() + LOCK_RETRY
        process = self.scheduler._process
        if process is None or not process.is_alive():
            try:
                self.scheduler.acquire_locks(auto_start=True)
            except (redis.ConnectionError, redis.TimeoutError):
                return  # tried again LOCK_RETRY later; the worker's own commands report the outage

    # --- heartbeats -------------------------------------------------------------------------------
    def get_heartbeat_ttl(self, job) -> int:
        return int(self.context.settings.orphan_timeout)

    # --- starting and ending jobs: one round trip for each, or for several short ones ---------------
    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """The next job to run (`_next_job`). With other workers in the process (threads), one that must
        run alone runs once they hold nothing and wait, and this one makes way for theirs (jobs.alone)."""
        if self._alone is None:
            return self._next_job(timeout, max_idle_time)
        while True:
            if self._stop_requested:
                raise StopRequested()
            holding = bool(self._ahead or self._prefetched.entries() or self._finishing)
            if not self._alone.wait_turn(self, lambda: self._stop_requested, holding):
                self._step_aside()
                continue
            try:
                taken = self._next_job(timeout, max_idle_time)
            except MakeWay:
                continue
            if taken is None:
                self._alone.release(self)
                return None
            if self._alone.admit(self, alone=taken[0].orphaned):
                return taken
            self._step_aside(taken)

    def _next_job(self, timeout, max_idle_time=None):
        """The next job taken ahead (prefetch.py; when none is left, those of the take in flight), else
        RQ's wait for a job, which the take script (dequeue.py) starts as it takes it, sending the ends
        of the jobs run since the last take in the same round trip. A job that a dead worker held runs
        with no other job held or ended and unrecorded (maintenance.py)."""
        held = self._prefetched.next()
        if held is None and self._ahead is not None:
            self._read_ahead()
            held = self._prefetched.next()
        if held is not None:
            if held[0].orphaned:
                self._clear_for_lone_job()
            else:
                self._take_ahead()
            return held
        riders = [finishing.rider for finishing in self._finishing]
        with taking_for(self._taker, riders, self._settle_finishing, self._prefetched.wanted()) as taking:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            self._hold(taking.extra)
        return result

    def _take_ahead(self) -> None:
        """While jobs are short, keep one take in flight, with the ends of the jobs run so far: the server
        runs it while this worker runs the jobs it holds."""
        wanted = self._prefetched.wanted()
        if self._ahead is None and wanted > 1 and not self._stop_requested:
            riders = [finishing.rider for finishing in self._finishing]
            self._ahead = Ahead(self.connection, self._ordered_queues, self._taker, riders, wanted)

    def _clear_for_lone_job(self) -> None:
        """Before a job that a dead worker held: write the ends of the jobs run so far and hold no other
        job, so that should it kill this worker too, no other job dies with it. When Redis cannot be
        reached, the ends wait for the next take (as after a failed take) and the job runs."""
        try:
            self._let_go()
        except redis.RedisError as exc:
            log.warning("worker %s: the ends of its last jobs not written yet (%s)", self.name, exc)

    def _step_aside(self, taken: tuple | None = None) -> None:
        """Give back `taken` and all this worker holds, and write the ends of the jobs it ran, for a job
        run alone. When Redis cannot be reached, the jobs are the orphan sweep's (never seen running,
        they use no retry), and the ends are sent once it answers again."""
        try:
            self._let_go(taken)
        except redis.RedisError as exc:
            log.warning("worker %s: jobs left to the orphan sweep (%s)", self.name, exc)
            self._prefetched.release()
            self._ahead = None
            self._wait_for_redis()

    def _read_ahead(self) -> None:
        """Read the take sent ahead (unless the heartbeat thread did), and settle the ends it carried."""
        ahead, self._ahead = self._ahead, None
        ahead.read(self.context, self.job_class, self._hold)
        self._settle_finishing()

    def _hold(self, jobs: list) -> None:
        for job, _ in jobs:
            job.redis_server_version = self.get_redis_server_version()
        self._prefetched.fill(jobs)

    def _let_go(self, taken: tuple | None = None) -> None:
        """Send the ends of the jobs run, and give back the jobs taken ahead (after `taken`, a job taken
        but not run): the worker runs no job now."""
        if self._ahead is not None:
            self._read_ahead()
        give_back(self.connection, [*([taken] if taken else []), *self._prefetched.release()])
        if self._finishing:
            send(self.connection, [finishing.rider for finishing in self._finishing])
            self._settle_finishing()

    def _settle_finishing(self) -> None:
        """For each end sent, what follows it (`_ended`); a success that found dependents to enqueue, and
        so wrote nothing, is finished RQ's own way. Ends not sent yet stay."""
        unsent = [finishing for finishing in self._finishing if finishing.rider.sent is None]
        for finishing in self._finishing:
            if finishing.rider.sent is Sent.HELD:
                self.execution = finishing.job.execution  # RQ's path ends `self.execution`
                super().handle_job_success(finishing.job, finishing.queue, finishing.registry)
            elif finishing.rider.sent in (Sent.WRITTEN, Sent.DEPENDENTS):
                self._ended(finishing)
            elif finishing.rider.sent is Sent.STALE:  # the sweep, which logs it, or a lost reply: routine
                log.debug(
                    "worker %s: the end of job %s not written: its run is no longer started here (the"
                    " orphan sweep recovered it, or an earlier send wrote it)",
                    self.name,
                    finishing.job.id,
                )
        if len(unsent) < len(self._finishing):
            self._execution_ended()
        self._finishing = unsent

    def _ended(self, finishing: _Finishing) -> None:
        """What RQ's path does once a job's end is written: count it, and after a job's last failure send
        its webhooks and enqueue the dependents that may follow a failure."""
        job = finishing.job
        timeline.make_counts(finishing.counts, self._tally)
        self.increment_total_working_time(job.ended_at - job.started_at)
        if finishing.exc_string is None:
            self.increment_successful_job_count()
            return
        self.increment_failed_job_count()
        if job.get_status(refresh=False) != JobStatus.FAILED:  # queued or scheduled for a retry
            return
        job.send_webhooks(JobStatus.FAILED, exc_string=finishing.exc_string)
        if finishing.rider.sent is Sent.DEPENDENTS:
            try:
                finishing.queue.enqueue_dependents(job)
            except redis.RedisError as exc:  # as RQ's path: the failure is written, the worker goes on
                log.error("worker %s: the dependents of job %s were not enqueued: %s", self.name, job.id, exc)

    def prepare_execution(self, job):
        """The take script has started `job` already (its execution record is the started registry's
        entry): the worker notes it runs it, for its heartbeats and the state its heartbeat thread writes."""
        self.execution = job.execution
        self.set_state(WorkerStatus.BUSY)
        self.set_current_job_id(job.id)
        self._running = (started_key(job.origin), self.execution)
        return self.execution

    def prepare_job_execution(self, job, remove_from_intermediate_queue=False):
        """Nothing left to write before the job runs (see prepare_execution)."""
        self.procline(f"Processing {job.job_name} from {job.origin} since {time.time()}")

    def cleanup_execution(self, job, pipeline):
        """RQ's, for an execution that has no record but its started-registry entry."""
        if self.execution is not None:
            pipeline.zrem(started_key(job.origin), self.execution.composite_key)
        self._execution_ended()

    def _execution_ended(self) -> None:
        self.set_current_job_id(None)
        self.execution = None

    def set_current_job_id(self, job_id=None, pipeline=None):
        """RQ's, written by the heartbeat thread within TALLY_INTERVAL (as the state is)."""
        self._current_job = job_id

    @property
    def _tally(self) -> timeline.Tally:
        """The counters of this process's worker (one per process, whatever its threads)."""
        return timeline.worker_tally(self.context.keys)

    def increment_successful_job_count(self, pipeline=None):
        """RQ's worker statistic, summed in memory and written by the heartbeat thread."""
        self._tally.add(self.key, "successful_job_count", 1)

    def increment_failed_job_count(self, pipeline=None):
        """RQ's worker statistic, summed in memory and written by the heartbeat thread."""
        self._tally.add(self.key, "failed_job_count", 1)

    def increment_total_working_time(self, job_execution_time, pipeline=None):
        """RQ's worker statistic, summed in memory and written by the heartbeat thread."""
        self._tally.add(self.key, "total_working_time", job_execution_time.total_seconds())

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        """RQ's, minus the job heartbeat it writes on its own: the job's end is saved right after."""
        job.ended_at = job.last_heartbeat = now()

    def execute_job(self, job, queue):
        self._performing = (job, queue)
        try:
            super().execute_job(job, queue)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Redis went away as the job started or ended. The job stays started and its heartbeats stop,
            # so the orphan sweep recovers it, with the jobs taken ahead; this worker waits for Redis
            # and goes on.
            log.warning(
                "worker %s: Redis lost around job %s (%s); it will be recovered", self.name, job.id, exc
            )
            self._prefetched.release()
            self._wait_for_redis()
        finally:
            self._running = self._performing = None
            if job.started_at and job.ended_at:
                self._prefetched.ran((job.ended_at - job.started_at).total_seconds())
            if self._alone:
                self._alone.release(self)

    @property
    def dequeue_timeout(self) -> int:
        """How long an idle worker waits for a job before RQ's loop comes back to it (`heartbeat`):
        LOCK_RETRY, where RQ's waits for 405 s."""
        return LOCK_RETRY

    def heartbeat(self, timeout=None, pipeline=None):
        """RQ's heartbeat when it rides in a pipeline. RQ also beats on its own three times per job
        (before and after a dequeue, after a job): two round trips each, which the heartbeat thread makes
        unnecessary. Those calls, from the worker's loop, keep the worker's mover running instead."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
        else:
            self._keep_mover()

    def set_state(self, state, pipeline=None):
        """RQ's, but a state not given a pipeline is written by the heartbeat thread within
        TALLY_INTERVAL, and only when it changed: RQ writes "idle" twice per job on its own."""
        self._state = state
        if pipeline is not None:
            super().set_state(state, pipeline)
            self._written_state = state

    def set_shutdown_requested_date(self):
        """RQ's, as bookkeeping: it is written from the stop signal's handler, where a refusal by a full
        Redis would be raised into whatever the worker was doing."""
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, "shutdown_requested_date", format_time(self._shutdown_requested_date))
            pipe.execute()

    def check_for_suspension(self, burst):
        """RQ's check for `rq suspend`, at most once a second instead of once per job. While Redis cannot
        be reached the worker goes on to its dequeue, which waits for Redis (RQ's would quit the worker)."""
        if time.monotonic() >= self._next_suspension_check:
            self._next_suspension_check = time.monotonic() + SUSPENSION_CHECK
            try:
                suspended = is_suspended(self.connection, self)
            except (redis.ConnectionError, redis.TimeoutError):
                return
            if suspended:
                self._let_go()  # a suspended worker waits here, maybe for long
                super().check_for_suspension(burst)

    def _wait_for_redis(self) -> None:
        delay = 0.5
        while not self._stop_requested:
            try:
                self.connection.ping()
                return
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        timeline.worker_tally(self.context.keys)  # from now on, the jobs of this process count in it
        self._heartbeats = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        self._heartbeats.start()

    def teardown(self):
        try:
            self._let_go()
        except redis.RedisError as exc:  # the jobs stay started: the orphan sweep recovers them
            log.warning("worker %s: the end of its last jobs not written (%s)", self.name, exc)
        self._beats.set()
        if self._heartbeats is not None:
            self._heartbeats.join(timeout=5)
            try:
                self._tally.flush(self.connection)
            except redis.RedisError as exc:
                log.warning("worker %s: counters of the last second not written (%s)", self.name, exc)
        super().teardown()

    def _heartbeat_loop(self) -> None:
        """Every TALLY_INTERVAL write the counters and state and give back the jobs taken ahead that wait
        too long, and every quarter of the orphan timeout beat."""
        ttl = int(self.context.settings.orphan_timeout)
        every = max(0.2, ttl / 4)
        last_beat = time.monotonic()
        next_beat = last_beat + every
        while not self._beats.wait(min(TALLY_INTERVAL, every)):
            beat = time.monotonic() >= next_beat
            try:
                if (ahead := self._ahead) is not None:
                    ahead.read(self.context, self.job_class, self._hold)  # its jobs need heartbeats
                give_back(self.connection, self._prefetched.release(waited=HOLD))
                self._tick(ttl if beat else None)
                if beat:
                    last_beat = time.monotonic()
                    next_beat = last_beat + every
                self._beat_outage.succeeded()
            except redis.RedisError as exc:
                self._beat_outage.failed(exc)
                if time.monotonic() - last_beat > ttl / 2:
                    # their heartbeat deadline may pass: they are the orphan sweep's, never run here
                    self._prefetched.release()

    def _tick(self, beat_ttl: int | None) -> None:
        """In one round trip (none when there is nothing to say): the counters summed since the last
        tick, the worker's state and current job if they changed, the mark of a job seen running for the
        first time (RUNNING_MARK), and with `beat_ttl` the heartbeats of the worker and of its jobs:
        running, taken ahead, and ended but not recorded yet."""
        state, job_id, running = self._state, self._current_job, self._running
        seen = running[1].composite_key if running is not None else self._seen_running
        with self.connection.pipeline() as pipe:
            counted = self._tally.write(pipe)
            if state != self._written_state:
                pipe.hset(self.key, "state", state)
            if job_id != self._written_job:
                pipe.hset(self.key, "current_job", job_id) if job_id else pipe.hdel(self.key, "current_job")
            if beat_ttl is not None:
                pipe.hset(self.key, "last_heartbeat", format_time(now()))
                pipe.expire(self.key, self.worker_ttl + 60)
                deadline = heartbeat_deadline(beat_ttl)
                for queue_name, entry in self._prefetched.entries():
                    pipe.zadd(started_key(queue_name), {entry: deadline}, xx=True)
                # jobs ended whose ends wait for the next take, which a slow job may hold back for long
                for end in [finishing.rider.end for finishing in self._finishing]:
                    pipe.zadd(end.started_key, {end.entry: deadline + RUNNING_MARK}, xx=True)  # they ran
            if running is not None and (beat_ttl is not None or seen != self._seen_running):
                registry_key, execution = running
                deadline = heartbeat_deadline(beat_ttl or int(self.context.settings.orphan_timeout))
                # XX: a job that ended meanwhile must not be put back
                pipe.zadd(registry_key, {execution.composite_key: deadline + RUNNING_MARK}, xx=True)
            try:
                pipe.execute()
            except redis.RedisError:
                self._tally.restore(counted)
                raise
        self._written_state, self._written_job, self._seen_running = state, job_id, seen

    def handle_job_success(self, job, queue, started_job_registry):
        """RQ's bookkeeping of a succeeded job, without a round trip of its own: its writes ride in the
        next take's script (or go on their own when the worker takes no more jobs), which first checks,
        atomically, that the job has no dependents to enqueue. A job with dependents (or an unusual one:
        kept 0 s, repeating) takes RQ's own path."""
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        if result_ttl == 0 or job.repeats_left:
            super().handle_job_success(job, queue, started_job_registry)
            if result_ttl == 0:  # RQ's path writes nothing of a success kept no time, not even its count
                timeline.make_counts([success_count(job)], self._tally)
            return
        job._status = JobStatus.FINISHED
        with self.connection.pipeline() as pipe, timeline.counts_held() as counts:
            job._record_success(result_ttl, pipe, self.name, self.execution.id, self.execution.created_at)
            if result_ttl > 0 and job._dependency_ids:  # RQ's job.cleanup; the dependents key is absent
                pipe.expire(job.dependencies_key, result_ttl)
            commands = pipe.detach()
        rider = Rider(self._finish(job, result_ttl), commands, job.dependents_key)
        self._finishing.append(_Finishing(rider, job, queue, started_job_registry, counts))

    def _finish(self, job: Job, result_ttl: int) -> Finish:
        expiry = index.expiry(result_ttl)
        return Finish(
            job.key,
            job.id,
            format_time(job.ended_at),
            result_ttl,
            int(expiry) if result_ttl >= 0 else "+inf" if result_ttl == -1 else result_ttl,  # as RQ scores
            expiry,
            index.indexed_name(job.job_name),
            FinishedJobRegistry.key_template.format(job.origin),
            self.context.keys.index("finished", job.origin),
            started_key(job.origin),
            self.execution.composite_key,
        )

    # --- failures, retries, interruption -----------------------------------------------------------
    def handle_exception(self, job, *exc_info):
        """Note the error for the failure that follows (handle_job_failure), which logs it. RQ's own
        formats the traceback a second time to log it: a fifth of a failing job's CPU. (It also runs RQ's
        exception handlers; the platform installs none.)"""
        job.error = error_summary(exc_info[1])
        job.raised = exc_info[1]

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string=""):
        """RQ's bookkeeping of a failed run, written once (it queues a retry and counts): a run's failure
        rides in the worker's next take, as a success does (`Failure`); a stopped job's takes RQ's own
        path, its transactions each written once (see bookkeeping)."""
        with bookkeeping.sent_once(self.context.keys):
            raised = getattr(job, "raised", None)
            if isinstance(raised, WorkerInterrupted):
                return self._requeue_interrupted(job, queue)
            self._log_failure(job, exc_string)
            try:
                spec = catalog.get(job.job_name)
                retryable = is_retryable(raised, spec.retry_on, spec.no_retry_on)
            except JobsError:  # not catalogued, or unreadable: retrying cannot help
                retryable = False
            if not retryable:
                job.retries_left = 0
            if self._stopped_job_id == job.id or self.disable_default_exception_handler:
                return super().handle_job_failure(job, queue, started_job_registry, exc_string)
            self._defer_failure(job, queue, started_job_registry, exc_string)

    def _defer_failure(self, job, queue, started_job_registry, exc_string: str) -> None:
        """What RQ's path writes for a failed run (its job retried, or failed), as a rider of the next take."""
        execution = self.execution
        with self.connection.pipeline() as pipe, timeline.counts_held() as counts:
            if job.should_retry:
                job.retry(queue, pipe)
            else:
                job.set_status(JobStatus.FAILED, pipeline=pipe)
                job._handle_failure(
                    exc_string,
                    pipe,
                    worker_name=self.name,
                    execution_id=execution.id,
                    execution_started_at=execution.created_at,
                    execution_ended_at=job.ended_at,
                )
            commands = pipe.detach()
        rider = Rider(Failure(started_key(job.origin), execution.composite_key), commands, job.dependents_key)
        self._finishing.append(_Finishing(rider, job, queue, started_job_registry, counts, exc_string))

    def _log_failure(self, job, exc_string: str) -> None:
        """RQ's error line for a job that raised, with the traceback RQ formatted for its failure."""
        try:
            extra = {"func": job.func_name, "arguments": job.args, "kwargs": job.kwargs}
        except DeserializationError:
            extra = {"func": "<DeserializationError>"}
        self.log.error(
            "Worker %s: job %s: exception raised while executing (%s)\n%s",
            self.name,
            job.id,
            extra["func"],
            exc_string,
            extra={**extra, "queue": job.origin, "job_id": job.id},
        )

    def _requeue_interrupted(self, job, queue) -> None:
        """The shutdown deadline stopped this job: put it back (`_put_back_interrupted`)."""
        self._put_back_interrupted(job, queue)
        self._execution_ended()

    def abandon(self) -> None:
        """For the process's main thread, when this worker's thread has not stopped at the deadline's
        interrupt (its job is in a blocking call, which the interrupt waits for) and the process exits
        without it: put the job back as interrupted (`_put_back_interrupted`), give back the jobs taken
        ahead and write the ends of the jobs run before it (`_let_go`; each written only while its run
        is started here, whichever thread comes first), and stop the scheduler. What Redis refuses is
        left to the orphan sweep."""
        performing = self._performing
        try:
            if performing is not None:
                self._put_back_interrupted(*performing)
            self._let_go()
        except redis.RedisError as exc:
            log.warning("worker %s: jobs left to the orphan sweep (%s)", self.name, exc)
        if self.scheduler:
            self.stop_scheduler()

    def _put_back_interrupted(self, job, queue) -> None:
        """Put `job`, stopped by the shutdown deadline, back at the front of its queue, no attempt used,
        atomically and only while its run is still started here: once, whichever thread comes first."""
        with self.connection.pipeline() as pipe:
            put_back(pipe, self.context, job, queue)
            timeline.record(
                pipe,
                self.context.keys,
                job.id,
                "interrupted",
                pending_ttl(self.context),
                worker=self.name,
                host=HOST,
            )
            commands = pipe.detach()
        rider = Rider(
            Failure(started_key(job.origin), job.execution.composite_key), commands, job.dependents_key
        )
        send(self.connection, [rider])
        if rider.sent is not Sent.STALE:
            log.warning("worker %s: job %s interrupted by shutdown, requeued", self.name, job.id)

    # --- signals ----------------------------------------------------------------------------------
    def _install_signal_handlers(self):
        """RQ's, and the pool's interrupt at the shutdown deadline; none in a worker thread, whose process's
        main thread handles the signals (jobs.threads)."""
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()
            signal.signal(INTERRUPT_SIGNAL, self._interrupt)

    def _shutdown(self):
        """RQ's for a busy worker, whatever the state: between jobs, RQ raises StopRequested from the
        signal handler, wherever the worker is, say just after taking a job and before running it or
        giving it back, or after sending a take ahead that nobody then reads: those jobs stayed started
        for the orphan sweep. The request is seen at the next take, or within IDLE_WAIT of an idle wait."""
        self._stop_requested = True
        self.set_shutdown_requested_date()
        if self.scheduler:
            self.stop_scheduler()

    def stop_after_job(self) -> None:
        """Stop once the running job has ended, or at once when idle; callable from any thread."""
        self._stop_requested = True

    def request_force_stop(self, signum, frame):
        """A second stop signal does not kill a running job: the pool's deadline interrupts it."""
        log.info(
            "worker %s: already stopping; the running job is requeued at the shutdown deadline", self.name
        )

    def _interrupt(self, signum, frame):
        self._stop_requested = True
        bodies.interrupt_all(WorkerInterrupted)

    # --- maintenance ------------------------------------------------------------------------------
    def clean_registries(self):
        """RQ's registry cleaning, minus its non-atomic recovery of abandoned jobs (maintenance.sweep_orphans
        does that atomically)."""
        for queue in self.queues:
            if queue.acquire_maintenance_lock():
                clean_registries_except_started(queue)
                clean_worker_registry(queue)
                queue.intermediate_queue.cleanup(self, queue)
                queue.release_maintenance_lock()
        self.last_cleaned_at = now()


def clean_registries_except_started(queue) -> None:
    """Expire finished, failed, deferred and canceled entries of `queue`; leaves started jobs alone."""
    for registry in (queue.finished_job_registry, queue.failed_job_registry, queue.deferred_job_registry):
        registry.cleanup()
    # RQ's canceled registry has no cleanup of its own; its entries are scored with their expiry too
    queue.connection.zremrangebyscore(queue.canceled_job_registry.key, 0, current_timestamp())
