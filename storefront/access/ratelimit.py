"""Rate limiting on ``limits``: a budget per API key or OAuth client, and one for failures.

``Limiter`` owns the storage (chosen by URI: ``memory://``, ``redis://…`` or
``redis+sentinel://…``) and the strategy. The default strategy, limits' fixed window, is
counted in one round trip per decision on Redis (``Counters``): a Lua script counts every key
of the decision and returns each count with what is left of its window, where limits' own
storage takes a call to count and another to read the window (and the token endpoint's look
at both failed-authentication budgets took two more). The keys, the window's start at the
first count and its expiry are limits' own (``incr_expire.lua``), so instances on either
code count one budget together. The other strategies go through limits as they are.
The functions at the end of this module are the only ones that spend a budget: ``charge`` for
an identified caller (the security functions, the token grant), ``record_failure`` for a failed
authentication (the HTTP adapter's failure layer, wherever the failure was raised). Each
publishes its decision in the request state (``storefront.access.state``), and the outer
middleware writes it into the response as ``X-RateLimit-*`` and the IETF ``RateLimit`` fields.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast
from urllib.parse import unquote, urlsplit

from limits import RateLimitItem, parse
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.types import Scope

from core.errors import RateLimited, RateLimitUnavailable
from core.settings import RATE_LIMIT_READS, Settings, masked_url
from storefront.access.replay import ReplayGuard
from storefront.access.state import AUTH_FAILURE, RATE_LIMIT, RATE_LIMIT_REPORT, request_state

if TYPE_CHECKING:
    # redis-py is imported only by a server whose store is Redis: with the OpenTelemetry SDK
    # that it brings in, it is about 20 MB of every worker's memory (bench/memory.py).
    from redis.asyncio import ConnectionPool
    from redis.asyncio.sentinel import Sentinel

logger = logging.getLogger("storefront.access.ratelimit")

STRATEGIES: dict[str, type[RateLimiter]] = {
    "fixed-window": FixedWindowRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}
#: Seconds a Redis call may take before the store counts as unreachable.
STORE_TIMEOUT = 0.5
#: Seconds to leave an unreachable store alone before trying it again.
RETRY_STORE_AFTER = 5
T = TypeVar("T")

Policy = Literal["default", "client", "auth-failures", "rate_limit_reads"]
#: ``Counters.decide`` with ``below=None``: the looked-at keys only read, never a gate.
_NO_GATE = 2**53


def sentinel_pool(url: str, **connection: Any) -> tuple[Sentinel, ConnectionPool]:
    """The Sentinel of a ``redis+sentinel://[:password@]host:port[,host:port…]/service`` URL
    (limits' syntax) and a pool of connections to the service's current primary.

    Every new connection asks the Sentinels where the primary is, so after a failover the pool
    reaches the promoted replica by itself. Only the primary is used, never a replica (limits'
    own Sentinel storage reads from replicas, whose counts lag behind the primary's): a budget
    is exact or it is not a budget.
    """
    from redis.asyncio.sentinel import Sentinel

    parts = urlsplit(url)
    service = parts.path.strip("/")
    if not service:
        raise ValueError("a redis+sentinel:// URL names the service: redis+sentinel://host/NAME")
    hosts = []
    for location in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = location.rpartition(":") if ":" in location else (location, "", "")
        hosts.append((host, int(port or 26379)))
    auth: dict[str, Any] = {"password": unquote(parts.password)} if parts.password else {}
    # A dead Sentinel must not hang a request: its connections read within the timeout too
    # (the primary's calls are bounded as a whole, by Limiter._guard).
    asked = {**auth, **connection, "socket_timeout": STORE_TIMEOUT}
    sentinel = Sentinel(hosts, sentinel_kwargs=asked, **auth, **connection)
    return sentinel, sentinel.master_for(service).connection_pool


def _failure_keys(ip: str, client_id: str | None) -> list[tuple[str, ...]]:
    """The failed-authentication budgets of an address, and of (address, client id)."""
    keys: list[tuple[str, ...]] = [("auth-fail-ip", ip)]
    if client_id:
        keys.append(("auth-fail-client", f"{ip}|{client_id}"))
    return keys


def _most_depleted(decisions: list[Decision]) -> Decision | None:
    return min(decisions, key=lambda d: (d.allowed, d.remaining)) if decisions else None


@lru_cache(maxsize=256)
def parse_limit(text: str) -> RateLimitItem:
    return parse(text)


@lru_cache(maxsize=4096)
def _storage_key(item: RateLimitItem, identifiers: tuple[str, ...]) -> str:
    """``item.key_for(*identifiers)``, remembered: limits builds the key anew on every call
    (a string conversion per part, then a join), the same few keys for a client's requests."""
    return item.key_for(*identifiers)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    policy: Policy
    limit: int
    window: int
    remaining: int
    reset: float

    def seconds_left(self, now: float | None = None) -> int:
        """Whole seconds until the window resets: never earlier than the reset itself."""
        return max(0, math.ceil(self.reset - (time.time() if now is None else now)))

    def headers(self) -> dict[str, str]:
        left = self.seconds_left()
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset)),
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w={self.window}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={left}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, left))
        return headers

    def refusal(self) -> RateLimited:
        retry = max(1, self.seconds_left())
        what = {
            "auth-failures": "failed authentications from this address",
            "rate_limit_reads": "reads of GET /rate_limit",
        }.get(self.policy, "requests")
        return RateLimited(
            f"Rate limit exceeded: at most {self.limit} {what} per {self.window} seconds. "
            f"Retry in {retry} seconds.",
            retry_after=retry,
        )


@dataclass(frozen=True)
class RateLimitReport:
    """The budgets of one caller (``kind`` "key" or "client", and its id), as GET /rate_limit
    shows them: each limit that applies (today one: the per-key or per-client budget, read,
    not counted), and GET /rate_limit's own budget, counted."""

    kind: str
    ident: str
    limits: tuple[Decision, ...]
    reads: Decision


def _decision(
    item: RateLimitItem, policy: Policy, allowed: bool, remaining: int, reset: float | None
) -> Decision:
    """A budget's decision; a window not started yet (``reset`` None) ends a window from now."""
    return Decision(
        allowed=allowed,
        policy=policy,
        limit=item.amount,
        window=item.get_expiry(),
        remaining=remaining,
        reset=time.time() + item.get_expiry() if reset is None else reset,
    )


#: One decision, in one round trip: look at the first ARGV[1] of KEYS (each has room while its
#: count is below ARGV[2]) and, if every one has room, count the rest of KEYS by one, a key
#: counted for the first time getting its window of ARGV[3] seconds (limits' incr_expire.lua).
#: Returns each key's count and the milliseconds its window has left (-2: none yet), flat, the
#: looked-at keys first: {count1, left1, count2, left2, ...}; the counted keys only if counted.
#: A counted key found without an expiry (none is ever written so) gets its window again
#: rather than counting forever.
_DECIDE = """
local looked = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local out = {}
local room = true
for i = 1, looked do
  local count = tonumber(redis.call('get', KEYS[i]) or '0')
  out[#out + 1] = count
  out[#out + 1] = redis.call('pttl', KEYS[i])
  if count >= limit then room = false end
end
if room then
  for i = looked + 1, #KEYS do
    local count = redis.call('incrby', KEYS[i], 1)
    if count == 1 then redis.call('expire', KEYS[i], ARGV[3]) end
    local left = redis.call('pttl', KEYS[i])
    if left < 0 then
      redis.call('expire', KEYS[i], ARGV[3])
      left = tonumber(ARGV[3]) * 1000
    end
    out[#out + 1] = count
    out[#out + 1] = left
  end
end
return out
"""

#: A key's count and when its window resets (Unix time; None: no window yet).
Count = tuple[int, float | None]


class Script(Protocol):
    """A Lua script registered with redis-py (``Redis.register_script``), called with its
    keys and arguments."""

    def __call__(self, keys: list[str], args: list[int]) -> Awaitable[Any]: ...


class Counters:
    """Fixed-window counters. ``decide`` looks at some keys and, if each is below its limit,
    counts others, in one step: on Redis one script, one round trip; in memory, limits'
    own storage."""

    def __init__(self, storage: AsyncStorage, redis_pool: ConnectionPool | None, prefix: str):
        self._storage = storage
        self._decide: Script | None = None
        if redis_pool is not None:
            from redis.asyncio import Redis

            self._decide = Redis(connection_pool=redis_pool).register_script(_DECIDE)
        #: limits' Redis storage prefixes every key with its key_prefix and ":"; so do we, so
        #: that both count the same key (tests/access/test_counters.py holds them together).
        self._prefix = f"{prefix}:" if redis_pool is not None else ""

    async def decide(
        self, *, look: list[str], below: int | None, count: list[str], expiry: int
    ) -> tuple[list[Count], list[Count] | None]:
        """The counts of ``look``; and, if each is below ``below`` (None: whatever they are),
        the counts of ``count`` after counting each by one (else None: nothing was counted)."""
        below = _NO_GATE if below is None else below
        if self._decide is None:
            looked: list[Count] = []
            for key in look:
                found = await self._storage.get(key)
                looked.append((found, await self._storage.get_expiry(key) if found else None))
            if any(found >= below for found, _ in looked):
                return looked, None
            counted: list[Count] = []
            for key in count:
                found = await self._storage.incr(key, expiry)
                counted.append((found, await self._storage.get_expiry(key)))
            return looked, counted
        from redis.exceptions import RedisError

        keys = [self._prefix + key for key in (*look, *count)]
        try:
            flat = await self._decide(keys=keys, args=[len(look), below, expiry])
        except RedisError as exc:
            # As limits' own calls raise it (wrap_exceptions), for Limiter._guard to judge.
            raise StorageError(exc) from exc
        now = time.time()
        counts: list[Count] = [
            (int(flat[i]), now + int(flat[i + 1]) / 1000 if int(flat[i + 1]) >= 0 else None)
            for i in range(0, len(flat), 2)
        ]
        return counts[: len(look)], (counts[len(look) :] if len(counts) > len(look) else None)


class Limiter:
    def __init__(
        self,
        *,
        storage_url: str,
        strategy: str,
        default_limit: str,
        auth_failure_limit: str,
        key_prefix: str,
        reads_limit: str = RATE_LIMIT_READS,
        fail_open: bool,
    ) -> None:
        self.shared = not storage_url.startswith("memory")
        self.shown_url = masked_url(storage_url)
        options: dict[str, Any] = {}
        self._pool: ConnectionPool | None = None
        self._sentinel: Sentinel | None = None
        if self.shared:
            # Our own pool, so that shutdown can close its connections (limits has no close()).
            # Connecting is bounded here; each call as a whole by _guard (asyncio.timeout):
            # a socket_timeout would bound each read with asyncio.wait_for, which makes a task
            # per read (a tenth of the call's CPU).
            timeouts = {"socket_connect_timeout": STORE_TIMEOUT}
            if storage_url.startswith("redis+sentinel:"):
                self._sentinel, self._pool = sentinel_pool(storage_url, **timeouts)
                # limits' plain Redis storage over that pool: the URL below only picks the
                # storage class; the pool decides where the connections go.
                storage_url = "redis://sentinel-primary:0"
            else:
                from redis.asyncio import ConnectionPool

                self._pool = ConnectionPool.from_url(storage_url, **timeouts)
            options = {
                "wrap_exceptions": True,
                "key_prefix": key_prefix,
                "implementation": "redispy",
                "connection_pool": self._pool,
            }
        # "async+" picks the asyncio flavour of the storage named by the URL.
        self.storage = cast(AsyncStorage, storage_from_string(f"async+{storage_url}", **options))
        self.strategy = STRATEGIES[strategy](self.storage)
        self.counters = Counters(self.storage, self._pool, key_prefix)
        #: One-time identifiers (assertion and proof ``jti``s), remembered in the same store.
        self.replay = ReplayGuard(self._pool, key_prefix)
        self.default_limit = parse_limit(default_limit)
        self.failure_limit = parse_limit(auth_failure_limit)
        self.reads_limit = parse_limit(reads_limit)
        self.key_prefix = key_prefix
        self.fail_open = fail_open
        self._down_until = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiter:
        return cls(
            storage_url=settings.rate_limit_storage_url,
            strategy=settings.rate_limit_strategy,
            default_limit=settings.rate_limit,
            auth_failure_limit=settings.auth_failure_limit,
            reads_limit=settings.rate_limit_reads,
            key_prefix=settings.rate_limit_key_prefix,
            fail_open=settings.rate_limit_fail_open,
        )

    def _unavailable(self) -> None:
        if not self.fail_open:
            raise RateLimitUnavailable()

    async def _guard(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """Run a storage call; on an unreachable store, fail open (None) or closed (503).

        After a failure the store is left alone for a few seconds, so that a blackholed Redis
        costs each request nothing rather than a timeout per call. A call that takes longer
        than STORE_TIMEOUT is cancelled (redis-py then drops the connection it was using: a
        reply that comes later is never read as another call's).
        """
        if time.monotonic() < self._down_until:
            self._unavailable()
            return None
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                return await call()
        except (StorageError, ConnectionError, TimeoutError, OSError) as exc:
            self._down_until = time.monotonic() + RETRY_STORE_AFTER
            logger.warning(
                "rate-limit store unreachable (%s); %s for %d s",
                type(getattr(exc, "storage_error", exc)).__name__,
                "serving without limits" if self.fail_open else "answering 503",
                RETRY_STORE_AFTER,
            )
            self._unavailable()
            return None

    async def _decide(
        self,
        *,
        look: Sequence[tuple[str, ...]] = (),
        count: Sequence[tuple[str, ...]] = (),
        count_item: RateLimitItem | None = None,
        count_policy: Policy = "default",
    ) -> tuple[list[Decision], list[Decision] | None] | None:
        """One decision over several budgets: the failed-authentication budgets of ``look``
        (identifiers under the key prefix) looked at, and, if each has room, the budgets of
        ``count`` (of ``count_item``) counted; on Redis in one round trip. None: the store is
        unreachable and failing open."""
        looked_item = self.failure_limit
        counted_item = count_item or self.default_limit

        def decided(
            looked: list[Count], counted: list[Count] | None
        ) -> tuple[list[Decision], list[Decision] | None]:
            top = looked_item.amount
            return [
                _decision(looked_item, "auth-failures", found < top, max(0, top - found), reset)
                for found, reset in looked
            ], None if counted is None else [
                _decision(
                    counted_item,
                    count_policy,
                    found <= counted_item.amount,
                    max(0, counted_item.amount - found),
                    reset,
                )
                for found, reset in counted
            ]

        async def call() -> tuple[list[Decision], list[Decision] | None]:
            if isinstance(self.strategy, FixedWindowRateLimiter):
                looked, counted = await self.counters.decide(
                    look=[_storage_key(looked_item, (self.key_prefix, *k)) for k in look],
                    below=looked_item.amount,
                    count=[_storage_key(counted_item, (self.key_prefix, *k)) for k in count],
                    expiry=counted_item.get_expiry(),
                )
                return decided(looked, counted)
            # limits' other strategies, as limits decides them: a call or two per budget.
            looks = []
            for key in look:
                allowed = await self.strategy.test(looked_item, self.key_prefix, *key)
                stats = await self.strategy.get_window_stats(looked_item, self.key_prefix, *key)
                looks.append(
                    _decision(
                        looked_item, "auth-failures", allowed, stats.remaining, stats.reset_time
                    )
                )
            if not all(d.allowed for d in looks):
                return looks, None
            counts = []
            for key in count:
                allowed = await self.strategy.hit(counted_item, self.key_prefix, *key)
                stats = await self.strategy.get_window_stats(counted_item, self.key_prefix, *key)
                remaining, reset = stats.remaining, stats.reset_time
                counts.append(_decision(counted_item, count_policy, allowed, remaining, reset))
            return looks, counts

        return await self._guard(call)

    async def charge(self, *, kind: str, ident: str, override: str | None) -> Decision | None:
        """Count one request of an identified caller (``kind`` "key" or "client")."""
        item = parse_limit(override) if override else self.default_limit
        policy: Policy = "client" if override else "default"
        decided = await self._decide(count=[(kind, ident)], count_item=item, count_policy=policy)
        return None if decided is None or decided[1] is None else decided[1][0]

    async def report(
        self, *, kind: str, ident: str, override: str | None
    ) -> tuple[Decision, Decision] | None:
        """GET /rate_limit for an identified caller (``kind`` "key" or "client"): its own
        budget (``rate_limit_reads``) counted by one, and the caller's budget that ``charge``
        counts only read, in one call to the store (on Redis one script: the same keys and
        counts as ``charge``'s, so exact across instances). Returns (the reads budget, the
        caller's budget); None: the store is unreachable and failing open."""
        item = parse_limit(override) if override else self.default_limit
        policy: Policy = "client" if override else "default"
        reads = self.reads_limit
        reads_key = ("rate_limit_reads", kind, ident)

        async def call() -> tuple[Decision, Decision]:
            if isinstance(self.strategy, FixedWindowRateLimiter):
                looked, counted = await self.counters.decide(
                    look=[_storage_key(item, (self.key_prefix, kind, ident))],
                    below=None,
                    count=[_storage_key(reads, (self.key_prefix, *reads_key))],
                    expiry=reads.get_expiry(),
                )
                assert counted is not None  # below=None: always counted
                (found, reset), (spent, reads_reset) = looked[0], counted[0]
                return (
                    _decision(
                        reads,
                        "rate_limit_reads",
                        spent <= reads.amount,
                        max(0, reads.amount - spent),
                        reads_reset,
                    ),
                    # Read, not counted: nothing is refused (no Retry-After on the 200).
                    _decision(item, policy, True, max(0, item.amount - found), reset),
                )
            # limits' other strategies: a hit and a look at the window, and a look.
            allowed = await self.strategy.hit(reads, self.key_prefix, *reads_key)
            window = await self.strategy.get_window_stats(reads, self.key_prefix, *reads_key)
            stats = await self.strategy.get_window_stats(item, self.key_prefix, kind, ident)
            return (
                _decision(reads, "rate_limit_reads", allowed, window.remaining, window.reset_time),
                _decision(item, policy, True, stats.remaining, stats.reset_time),
            )

        return await self._guard(call)

    async def admit(
        self, *, ip: str, client_id: str, override: str | None, charge: bool
    ) -> tuple[Decision | None, Decision | None]:
        """A proven OAuth client at the token endpoints, in one call to the store: the
        failed-authentication budgets of its address and of (address, client id) looked at
        and, if both have room and ``charge``, the client's own budget counted. Returns the
        most depleted failure budget and the charge (None: not counted, or failing open)."""
        item = parse_limit(override) if override else self.default_limit
        decided = await self._decide(
            look=_failure_keys(ip, client_id),
            count=[("client", client_id)] if charge else [],
            count_item=item,
            count_policy="client" if override else "default",
        )
        if decided is None:
            return None, None
        looked, counted = decided
        return _most_depleted(looked), None if not counted else counted[0]

    async def failures(self, *, ip: str, client_id: str | None, record: bool) -> Decision | None:
        """The failed-authentication budgets of this address, and of (address, client id).

        With ``record`` a failure is counted; without, the budgets are only looked at. The
        most depleted of the two is returned.
        """
        keys = _failure_keys(ip, client_id)
        if record:
            decided = await self._decide(
                count=keys, count_item=self.failure_limit, count_policy="auth-failures"
            )
            return None if decided is None else _most_depleted(decided[1] or [])
        decided = await self._decide(look=keys)
        return None if decided is None else _most_depleted(decided[0])

    async def check(self) -> str | None:
        """None when the store answers now, else why not (for /readyz, so a few words that
        name no address). A success ends any back-off."""
        if self._pool is None:  # in process: always there
            return None
        from redis.asyncio import Redis
        from redis.exceptions import RedisError

        try:
            # A PING of our own: limits' check() swallows the error that says why.
            async with asyncio.timeout(STORE_TIMEOUT):
                await Redis(connection_pool=self._pool).ping()
        except (RedisError, ConnectionError, TimeoutError, OSError) as exc:
            return _store_failure(exc)
        self._down_until = 0.0
        return None

    async def warn_if_unreachable(self) -> None:
        """At start: a shared store that does not answer gets a warning naming the setting and
        what requests will meet until it answers (the server starts either way: Redis may come
        up after it)."""
        if not self.shared or await self.check() is None:  # None: it answers
            return
        logger.warning(
            "the rate-limit store STOREFRONT_RATE_LIMIT_STORAGE_URL=%s cannot be reached; %s",
            self.shown_url,
            "failing open (STOREFRONT_RATE_LIMIT_FAIL_OPEN=true): requests are served "
            "without rate limits until it answers"
            if self.fail_open
            else "failing closed (STOREFRONT_RATE_LIMIT_FAIL_OPEN=false): requests are "
            "answered 503 until it answers",
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()


def _store_failure(exc: BaseException) -> str:
    """Why the store failed, in words that name no address (redis-py's messages do)."""
    from redis.asyncio.sentinel import MasterNotFoundError
    from redis.exceptions import ReadOnlyError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    chain = [exc]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) and len(chain) < 10:
        chain.append(cause)
    for error in chain:
        if isinstance(error, MasterNotFoundError):
            return "no primary: the Sentinels know of none that answers"
        if isinstance(error, TimeoutError | RedisTimeoutError):
            return f"no answer within {STORE_TIMEOUT:g} s"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, ReadOnlyError):
            return "read-only: connected to a replica"
    return f"unreachable ({type(exc).__name__})"


async def charge(
    limiter: Limiter, scope: Scope, *, kind: str, ident: str, override: str | None
) -> None:
    """Charge an identified caller's budget; its headers go on the response, or a 429."""
    decision = await limiter.charge(kind=kind, ident=ident, override=override)
    _publish(scope, decision)
    if decision is not None and not decision.allowed:
        raise decision.refusal()


async def report(
    limiter: Limiter, scope: Scope, *, kind: str, ident: str, override: str | None
) -> None:
    """GET /rate_limit: the caller's ``rate_limit_reads`` budget charged (a 429 past it, with
    that budget's headers), its main budget read and published as this response's headers
    and as the report the handler shows (``rate_limit_report_of``). Failing open: no report,
    nothing spent."""
    decided = await limiter.report(kind=kind, ident=ident, override=override)
    if decided is None:
        return
    reads, budget = decided
    if not reads.allowed:
        _publish(scope, reads)
        raise reads.refusal()
    _publish(scope, budget)
    request_state(scope)[RATE_LIMIT_REPORT] = RateLimitReport(
        kind=kind, ident=ident, limits=(budget,), reads=reads
    )


async def admit_client(
    limiter: Limiter, scope: Scope, *, client_id: str, override: str | None, charge: bool
) -> None:
    """A client proven at the token endpoints: a 429 if its source is over its
    failed-authentication budget (whether or not the secret was right: answering 200 or 401
    would keep it guessing at line speed), else its own budget charged when ``charge``, with
    headers or a 429 as ``charge`` gives them. One call to the store (``Limiter.admit``)."""
    failing, charged = await limiter.admit(
        ip=client_ip(scope), client_id=client_id, override=override, charge=charge
    )
    if failing is not None and not failing.allowed:
        _publish(scope, failing)
        raise failing.refusal()
    _publish(scope, charged)
    if charged is not None and not charged.allowed:
        raise charged.refusal()


async def record_failure(
    limiter: Limiter, scope: Scope, *, reason: str, client_id: str | None
) -> None:
    """Count a failed authentication against its address and (address, client id); a 429
    (RateLimited) once the source is over budget. ``reason`` labels the failure metric."""
    request_state(scope)[AUTH_FAILURE] = reason
    decision = await limiter.failures(ip=client_ip(scope), client_id=client_id, record=True)
    _publish(scope, decision)
    if decision is not None and not decision.allowed:
        raise decision.refusal()


def refuse_scope(scope: Scope) -> None:
    """Note a credential that lacks the scope (a metrics label; no budget is spent)."""
    request_state(scope)[AUTH_FAILURE] = "insufficient_scope"


def _publish(scope: Scope, decision: Decision | None) -> None:
    if decision is not None:
        request_state(scope)[RATE_LIMIT] = decision


def rate_limit_report_of(scope: Scope) -> RateLimitReport | None:
    """What GET /rate_limit shows this request's caller (None: the store was unreachable)."""
    found: RateLimitReport | None = scope.get("state", {}).get(RATE_LIMIT_REPORT)
    return found


def rate_limit_of(scope: Scope) -> Decision | None:
    """The decision to report in this request's response headers, if a budget was looked at."""
    found: Decision | None = scope.get("state", {}).get(RATE_LIMIT)
    return found


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
