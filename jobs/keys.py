"""The Redis key schema of the platform. Every key of ours is built here; RQ owns `rq:*`.

All keys start with the configured prefix (JOBS_PREFIX, default `jobs:`):

    {p}timeline:{job_id}                 list    the job's state history that its hash cannot tell (the timeline
                                                 module), one JSON object per event ({"at": epoch, "event": ...,
                                                 details}); none for a job that succeeds at once; expires with
                                                 the job
    {p}stats:{status}:{unit}:{stamp}     hash    job name -> count of `status` (succeeded|failed) in that
                                                 minute (unit "minute", stamp YYYYmmddHHMM, kept 2 days) or hour
                                                 (unit "hour", stamp YYYYmmddHH, kept 8 days); totals are sums
    {p}durations:{stamp}                 hash    "job name|bucket" -> successful runs that took up to `bucket` seconds
                                                 in that hour (stamp YYYYmmddHH), "job name|sum" -> their seconds;
                                                 kept 8 days
    {p}schedule:{id}                     hash    a recurring schedule (the recurring module)
    {p}schedules:due                     zset    schedule id -> next fire time (epoch seconds)
    {p}schedule:{id}:runs                zset    job id -> fire time, capped run history
    {p}schedulers                       zset    scheduler name -> last heartbeat (epoch); dead ones dropped after a day
    {p}lock:{name}                       string  a held lock: "token|holder JSON" (job, worker, host, pid, since);
                                                 expires unless renewed
    {p}fence:{name}                      string  the fencing token of the lock's current holder; expires with it
    {p}locks                             set     names of the locks that may be held (the index `jobctl locks list`
                                                 reads); expired ones are pruned by maintenance
    {p}fence-counter                     string  where fencing tokens come from: one counter for every lock
                                                 name, so a later holder of a name always has a larger token
    {p}unique:{key}                      string  id of the pending job that owns a unique key (the
                                                 `unique=` job option); expires with the job's pending TTL
    {p}audit                             stream  operator actions (who, what, when, from where), capped
    {p}bulk:{task}                       hash    progress of a dashboard bulk action (action, state, done, total);
                                                 kept a day
    {p}index:{state}:{queue}             zset    finished or failed jobs of a queue by end time and by name, for
                                                 filtered lists (the index module); expired entries are swept
    {p}wake:{queue}                      list    tokens that wake an idle worker of the queue when a job is queued
                                                 on a short queue (the dequeue module); at most a few
    {p}orphans                           zset    "queue|job_id:execution_id" -> time found (whole seconds, + 0.5
                                                 when the job was seen running): jobs whose worker died, between
                                                 the sweep finding them and their requeue (maintenance)
    {p}sent:{token}                      string  a worker's transaction that was committed (a stopped job's failure,
                                                 an interrupted job's requeue) or a lock released, which the same
                                                 call sent again after a lost reply finds, and so writes nothing
                                                 (bookkeeping, locks); kept 5 minutes
"""

from __future__ import annotations

from dataclasses import dataclass


def storable(text: str) -> bool:
    """Whether `text` can go to Redis as we write it (UTF-8): not when it holds lone surrogates, which is
    how Python decodes bytes that were not UTF-8 (shell arguments) or JSON escapes that are not Unicode."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Keys:
    """Key builders for one prefix. Pure: no I/O."""

    prefix: str = "jobs:"

    def timeline(self, job_id: str) -> str:
        return f"{self.prefix}timeline:{job_id}"

    def stats(self, status: str, unit: str, stamp: str) -> str:
        return f"{self.prefix}stats:{status}:{unit}:{stamp}"

    def durations(self, stamp: str) -> str:
        return f"{self.prefix}durations:{stamp}"

    def schedule(self, schedule_id: str) -> str:
        return f"{self.prefix}schedule:{schedule_id}"

    @property
    def schedules_due(self) -> str:
        return f"{self.prefix}schedules:due"

    def schedule_runs(self, schedule_id: str) -> str:
        return f"{self.prefix}schedule:{schedule_id}:runs"

    @property
    def schedulers(self) -> str:
        return f"{self.prefix}schedulers"

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def fence(self, name: str) -> str:
        return f"{self.prefix}fence:{name}"

    @property
    def locks(self) -> str:
        return f"{self.prefix}locks"

    @property
    def fence_counter(self) -> str:
        return f"{self.prefix}fence-counter"

    def unique(self, key: str) -> str:
        return f"{self.prefix}unique:{key}"

    @property
    def audit(self) -> str:
        return f"{self.prefix}audit"

    def bulk(self, task_id: str) -> str:
        return f"{self.prefix}bulk:{task_id}"

    @property
    def orphans(self) -> str:
        return f"{self.prefix}orphans"

    def index(self, state: str, queue: str) -> str:
        return f"{self.prefix}index:{state}:{queue}"

    def wake(self, queue: str) -> str:
        return f"{self.prefix}wake:{queue}"

    def sent(self, token: str) -> str:
        return f"{self.prefix}sent:{token}"
