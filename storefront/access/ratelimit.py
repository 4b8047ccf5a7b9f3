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
import hashlib
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast
from urllib.parse import unquote, urlsplit

from limits import RateLimitItem, parse, parse_many
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

#: A limit's name (``RateLimit-Policy``, GET /rate_limit, the 429's message): "default" (the
#: server's STOREFRONT_RATE_LIMIT), "client" or "key" (one limit of the client's or key's
#: own), "per-minute", "per-day", "per-5-minutes"… (one of several: named by its window),
#: "uses" (a key's number of uses), "auth-failures", "rate_limit_reads".
Policy = str
USES: Policy = "uses"
#: ``Counters.decide``: a counted key that is no gate (counted whatever its count).
_NO_GATE = 2**53
#: At most this many limits per client or key.
MAX_LIMITS = 10


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
@lru_cache(maxsize=256)
def parse_limit(text: str) -> RateLimitItem:
    """One limit ("1000/month"); remembered, as ``uses_of`` asks for a key's refill on every
    request of a use-counted key."""
    return parse(text)


@lru_cache(maxsize=256)
def parse_limits(text: str) -> tuple[RateLimitItem, ...]:
    """One or more limits separated by ``;`` (or ``,``, ``|``): "100/minute;10000/day"."""
    return tuple(parse_many(text))


def window_name(item: RateLimitItem) -> str:
    """The name of one of several limits: its window ("per-minute", "per-5-minutes")."""
    unit = item.GRANULARITY.name
    return f"per-{unit}" if item.multiples == 1 else f"per-{item.multiples}-{unit}s"


@dataclass(frozen=True)
class Limit:
    """One named limit of a caller."""

    name: Policy
    item: RateLimitItem


@lru_cache(maxsize=1024)
def named_limits(text: str, own: Policy) -> tuple[Limit, ...]:
    """A caller's own limits by name: one limit is named ``own`` ("client" or "key"), each
    of several by its window."""
    items = parse_limits(text)
    if len(items) == 1:
        return (Limit(own, items[0]),)
    return tuple(Limit(window_name(item), item) for item in items)


@dataclass(frozen=True)
class Uses:
    """A key's number of uses in the current refill period: ``quota`` of them, counted at
    ``key`` (in the store, or the database with an in-memory store: ``key_id``, ``period``);
    the period ends at ``reset`` (None: no refill) and lasts ``window`` seconds (0: none)."""

    key_id: str
    key: str
    quota: int
    period: int
    reset: float | None
    window: int
    refill: str | None

    def expiry(self, now: float) -> int:
        """Seconds the store keeps the count: the period's rest and a minute (0: for ever)."""
        return 0 if self.reset is None else math.ceil(self.reset - now) + 60


def uses_of(
    key_id: str, uses: int | None, refill: str | None, created: float, now: float | None = None
) -> Uses | None:
    """The uses of a key made at ``created`` (Unix time) at ``now``: ``uses`` in the first
    refill period, the refill's amount in each later one (periods counted from creation)."""
    if uses is None:
        return None
    if refill is None:
        return Uses(key_id, f"uses/{key_id}", uses, 0, None, 0, None)
    item = parse_limit(refill)
    now = time.time() if now is None else now
    window = item.get_expiry()
    period = max(0, int((now - created) // window))
    return Uses(
        key_id=key_id,
        key=f"uses/{key_id}/{period}",
        quota=uses if period == 0 else item.amount,
        period=period,
        reset=created + (period + 1) * window,
        window=window,
        refill=refill,
    )


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
    #: Seconds; 0 for uses that never refill (no window, no reset).
    window: int
    remaining: int
    reset: float

    def seconds_left(self, now: float | None = None) -> int:
        """Whole seconds until the window resets: never earlier than the reset itself."""
        return max(0, math.ceil(self.reset - (time.time() if now is None else now)))

    def policy_item(self) -> str:
        """This limit as an item of ``RateLimit-Policy``."""
        return f'"{self.policy}";q={self.limit};w={self.window}'

    def headers(self) -> dict[str, str]:
        left = self.seconds_left()
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset)),
            "RateLimit-Policy": self.policy_item(),
            "RateLimit": f'"{self.policy}";r={self.remaining};t={left}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, left))
        return headers

    def refusal(self) -> RateLimited:
        if self.policy == USES:
            if not self.window:
                return RateLimited(
                    f'Usage limit "uses" reached: this API key has used all of its '
                    f"{self.limit} uses, and they do not refill.",
                    retry_after=None,
                )
            retry = max(1, self.seconds_left())
            return RateLimited(
                f'Usage limit "uses" reached: this API key has used all of its {self.limit} '
                f"uses of this period. They refill in {retry} seconds.",
                retry_after=retry,
            )
        retry = max(1, self.seconds_left())
        what = {
            "auth-failures": "failed authentications from this address",
            "rate_limit_reads": "reads of GET /rate_limit",
        }.get(self.policy, "requests")
        return RateLimited(
            f'Rate limit "{self.policy}" exceeded: at most {self.limit} {what} per '
            f"{self.window} seconds. Retry in {retry} seconds.",
            retry_after=retry,
        )


def _sooner(decision: Decision) -> tuple[int, float]:
    """Order of depletion: fewest requests left first; of as few, the later reset."""
    return decision.remaining, -decision.reset


@dataclass(frozen=True)
class Verdict:
    """A charge of a caller's limits (and uses): every window's decision, the uses' (a key
    with a number of uses), and the one that refused the request (None: accepted).

    Its headers: ``RateLimit-Policy`` lists every window; ``X-RateLimit-*`` and ``RateLimit``
    describe one (``shown``): the window that refused the request, else the most depleted
    (fewest requests left; of as few, the one that resets later). ``Retry-After`` is the
    refusing limit's reset; refused for its uses, a key gets it only when they refill."""

    windows: tuple[Decision, ...]
    uses: Decision | None = None
    refused: Decision | None = None

    @property
    def allowed(self) -> bool:
        return self.refused is None

    @property
    def shown(self) -> Decision:
        if self.refused is not None and self.refused.policy != USES:
            return self.refused
        return min(self.windows, key=_sooner)

    @property
    def policy(self) -> Policy:
        return (self.refused or self.shown).policy

    @property
    def limit(self) -> int:
        return self.shown.limit

    @property
    def remaining(self) -> int:
        return self.shown.remaining

    @property
    def reset(self) -> float:
        return self.shown.reset

    def headers(self) -> dict[str, str]:
        headers = self.shown.headers()
        if len(self.windows) > 1:
            headers["RateLimit-Policy"] = ", ".join(d.policy_item() for d in self.windows)
        if self.refused is not None and self.refused.policy == USES:
            headers.pop("Retry-After", None)
            if self.refused.window:
                headers["Retry-After"] = str(max(1, self.refused.seconds_left()))
        return headers

    def refusal(self) -> RateLimited:
        assert self.refused is not None
        return self.refused.refusal()


def _verdict(windows: list[Decision], uses: Decision | None, counted: bool) -> Verdict:
    """The verdict of a charge: accepted when ``counted``; else refused by the full limit
    that frees up last (uses that never refill: never)."""
    if counted:
        return Verdict(tuple(windows), uses)
    full = [d for d in (*windows, uses) if d is not None and not d.allowed]
    if not full:  # refused by nothing of these (a failure budget at the token endpoint)
        return Verdict(tuple(windows), uses)
    refused = max(full, key=lambda d: math.inf if d.policy == USES and not d.window else d.reset)
    return Verdict(tuple(windows), uses, refused)


@dataclass(frozen=True)
class RateLimitReport:
    """The budgets of one caller (``kind`` "key" or "client", and its id), as GET /rate_limit
    shows them: each limit that applies, read, not counted; the key's uses (None: it has no
    number of uses), read; and GET /rate_limit's own budget, counted."""

    kind: str
    ident: str
    limits: tuple[Decision, ...]
    reads: Decision
    uses: Decision | None = None
    refill: str | None = None


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


def _uses_decision(uses: Uses, spent: int, allowed: bool) -> Decision:
    return Decision(
        allowed=allowed,
        policy=USES,
        limit=uses.quota,
        window=uses.window,
        remaining=max(0, uses.quota - spent),
        reset=0.0 if uses.reset is None else uses.reset,
    )


#: One decision, in one round trip, over any number of keys. ARGV[1] is how many of KEYS are
#: only looked at; then for each key its limit and its window in seconds (ARGV[2i], ARGV[2i+1];
#: 0: none, the key is kept for ever). Every key is read first, and has room while its count
#: is below its limit; if every one has room, the keys after the looked-at ones are counted by
#: one, a key counted for the first time getting its window (limits' incr_expire.lua). So a
#: request refused by one limit spends none of the others. Returns whether it counted, then
#: each key's count (after counting, if counted) and the milliseconds its window has left
#: (-2: none yet; -1: none, for ever), flat: {counted, count1, left1, count2, left2, ...}.
#: A counted key found without an expiry it should have gets its window again rather than
#: counting forever.
_DECIDE = """
local looked = tonumber(ARGV[1])
local counts = {}
local room = true
for i = 1, #KEYS do
  local count = tonumber(redis.call('get', KEYS[i]) or '0')
  counts[i] = count
  if count >= tonumber(ARGV[2 * i]) then room = false end
end
local out = {0}
if room then
  out[1] = 1
  for i = looked + 1, #KEYS do
    local window = tonumber(ARGV[2 * i + 1])
    local count = redis.call('incrby', KEYS[i], 1)
    if count == 1 and window > 0 then redis.call('expire', KEYS[i], window) end
    counts[i] = count
  end
end
for i = 1, #KEYS do
  local left = redis.call('pttl', KEYS[i])
  local window = tonumber(ARGV[2 * i + 1])
  if room and i > looked and left == -1 and window > 0 then
    redis.call('expire', KEYS[i], window)
    left = window * 1000
  end
  out[#out + 1] = counts[i]
  out[#out + 1] = left
end
return out
"""

#: A key's count and when its window resets (Unix time; None: no window yet, or none ever).
Count = tuple[int, float | None]
#: A key to look at, and its limit: the decision counts nothing if its count is at the limit.
Look = tuple[str, int]
#: A key to count, its limit (``_NO_GATE``: counted whatever its count) and its window in
#: seconds (0: none).
Counted = tuple[str, int, int]


class _Scripted:
    """A Lua script run with EVALSHA, loaded (SCRIPT LOAD) when the server does not know it
    yet (a new or restarted Redis, a failover): what redis-py's ``Script`` does, without the
    imports and type checks it repeats on every call (a tenth of a decision's CPU)."""

    def __init__(self, redis_pool: ConnectionPool, source: str) -> None:
        from redis.asyncio import Redis
        from redis.exceptions import NoScriptError

        self._redis = Redis(connection_pool=redis_pool)
        self._unknown = NoScriptError
        self._source = source
        self._sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: list[bytes], args: list[bytes]) -> Any:
        try:
            return await self._redis.evalsha(self._sha, len(keys), *keys, *args)
        except self._unknown:
            await self._redis.script_load(self._source)
            return await self._redis.evalsha(self._sha, len(keys), *keys, *args)


class Counters:
    """Fixed-window counters. ``decide`` looks at every key and, if each is below its limit,
    counts some of them, in one step: on Redis one script, one round trip, whatever the number
    of keys; in memory, limits' own storage."""

    def __init__(self, storage: AsyncStorage, redis_pool: ConnectionPool | None, prefix: str):
        self._storage = storage
        self._decide: _Scripted | None = None
        if redis_pool is not None:
            self._decide = _Scripted(redis_pool, _DECIDE)
        #: limits' Redis storage prefixes every key with its key_prefix and ":"; so do we, so
        #: that both count the same key (tests/access/test_counters.py holds them together).
        self._prefix = f"{prefix}:" if redis_pool is not None else ""

    async def decide(
        self, *, look: Sequence[Look] = (), count: Sequence[Counted] = ()
    ) -> tuple[list[Count], list[Count], bool]:
        """The counts of ``look`` and of ``count``; if each key is below its limit, those of
        ``count`` after counting each by one. Returns (looked, counted, whether counted)."""
        if self._decide is None:
            looked: list[Count] = []
            for key, _ in look:
                looked.append(await self._read(key))
            before = [await self._read(key) for key, _, _ in count]
            room = all(found < limit for (found, _), (_, limit) in zip(looked, look, strict=True))
            room = room and all(
                found < limit for (found, _), (_, limit, _) in zip(before, count, strict=True)
            )
            if not room:
                return looked, before, False
            counted: list[Count] = []
            for key, _, window in count:
                # In memory a count kept for ever (window 0) is kept ten years.
                found = await self._storage.incr(key, window or 315_360_000)
                counted.append((found, await self._storage.get_expiry(key)))
            return looked, counted, True
        from redis.exceptions import RedisError

        # As bytes: redis-py passes bytes through, and runs every str and int through four
        # type checks and an encode of its own (a tenth of a token request's Redis CPU).
        prefix = self._prefix
        keys = [(prefix + key).encode() for key, _ in look]
        keys += [(prefix + key).encode() for key, _, _ in count]
        args = [b"%d" % len(look)]
        for _, limit in look:
            args += [b"%d" % limit, b"0"]
        for _, limit, window in count:
            args += [b"%d" % limit, b"%d" % window]
        try:
            flat = await self._decide(keys=keys, args=args)
        except RedisError as exc:
            # As limits' own calls raise it (wrap_exceptions), for Limiter._guard to judge.
            raise StorageError(exc) from exc
        now = time.time()
        counts: list[Count] = [
            (int(flat[i]), now + int(flat[i + 1]) / 1000 if int(flat[i + 1]) >= 0 else None)
            for i in range(1, len(flat), 2)
        ]
        return counts[: len(look)], counts[len(look) :], bool(int(flat[0]))

    async def _read(self, key: str) -> Count:
        found = await self._storage.get(key)
        return found, (await self._storage.get_expiry(key) if found else None)


class UsesLedger(Protocol):
    """Where a key's uses are spent when the rate-limit store is in memory: the database
    (``persistence.clients.spend_use``), so that they outlive a restart."""

    async def spend(self, uses: Uses) -> int | None:
        """Spend one: the uses spent after it, or None when none was left."""

    async def spent(self, uses: Uses) -> int:
        """The uses spent in the current period."""


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
            # Connecting is bounded here; each call as a whole by _guard (asyncio.timeout), or
            # the replay store's and check()'s own. redis-py's own socket_timeout (5 s in
            # redis-py 8) is kept although it wraps each write in asyncio.wait_for (a task per
            # command): without it a token request cost about 5% less CPU on PostgreSQL +
            # Redis, but its p99 rose from 2.0-2.2x p50 to 2.8-3.1x (bisected on 2026-12-07,
            # bench/compare_peers.py; why is not known yet).
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
        self._default = (Limit("default", self.default_limit),)
        #: Per API key, while one of its requests spends a use in the database.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

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

    def limits(self, override: str | None, own: Policy = "client") -> tuple[Limit, ...]:
        """The named limits of a caller whose own limits are ``override`` (None: the server's),
        set on its ``own`` ("client" or "key")."""
        return named_limits(override, own) if override else self._default

    def _key(self, item: RateLimitItem, *identifiers: str) -> str:
        return _storage_key(item, (self.key_prefix, *identifiers))

    def _uses_key(self, uses: Uses) -> str:
        return f"{self.key_prefix}/{uses.key}"

    async def _fixed(
        self,
        *,
        kind: str,
        ident: str,
        limits: Sequence[Limit],
        uses: Uses | None,
        look: Sequence[Look] = (),
    ) -> tuple[list[Count], Verdict]:
        """The fixed-window charge: every limit (and the uses, counted in the store), and the
        keys of ``look`` looked at, in one ``Counters.decide``: on Redis one round trip."""
        count: list[Counted] = [
            (self._key(limit.item, kind, ident), limit.item.amount, limit.item.get_expiry())
            for limit in limits
        ]
        if uses is not None:
            count.append((self._uses_key(uses), uses.quota, uses.expiry(time.time())))
        looked, counted, done = await self.counters.decide(look=look, count=count)
        windows = [
            _decision(
                limit.item,
                limit.name,
                done or found < limit.item.amount,
                max(0, limit.item.amount - found),
                reset,
            )
            for limit, (found, reset) in zip(limits, counted, strict=False)
        ]
        used = None
        if uses is not None:
            spent = counted[-1][0]
            used = _uses_decision(uses, spent, done or spent < uses.quota)
        return looked, _verdict(windows, used, done)

    async def _look_windows(self, kind: str, ident: str, limits: Sequence[Limit]) -> list[Decision]:
        """Every limit looked at, nothing counted."""
        if isinstance(self.strategy, FixedWindowRateLimiter):
            keys = [(self._key(limit.item, kind, ident), _NO_GATE) for limit in limits]
            looked, _, _ = await self.counters.decide(look=keys)
            return [
                _decision(
                    limit.item,
                    limit.name,
                    found < limit.item.amount,
                    max(0, limit.item.amount - found),
                    reset,
                )
                for limit, (found, reset) in zip(limits, looked, strict=True)
            ]
        found = []
        for limit in limits:
            allowed = await self.strategy.test(limit.item, self.key_prefix, kind, ident)
            stats = await self.strategy.get_window_stats(limit.item, self.key_prefix, kind, ident)
            found.append(
                _decision(limit.item, limit.name, allowed, stats.remaining, stats.reset_time)
            )
        return found

    async def _hit_windows(self, kind: str, ident: str, limits: Sequence[Limit]) -> list[Decision]:
        """Every limit counted by one (after a look found room in each)."""
        if isinstance(self.strategy, FixedWindowRateLimiter):
            _, verdict = await self._fixed(kind=kind, ident=ident, limits=limits, uses=None)
            return list(verdict.windows)
        found = []
        for limit in limits:
            allowed = await self.strategy.hit(limit.item, self.key_prefix, kind, ident)
            stats = await self.strategy.get_window_stats(limit.item, self.key_prefix, kind, ident)
            found.append(
                _decision(limit.item, limit.name, allowed, stats.remaining, stats.reset_time)
            )
        return found

    async def charge(
        self,
        *,
        kind: str,
        ident: str,
        override: str | None,
        own: Policy = "client",
        uses: Uses | None = None,
        ledger: UsesLedger | None = None,
    ) -> Verdict | None:
        """Count one request of an identified caller (``kind`` "key" or "client") against
        each of its limits, and one of a key's ``uses``: every limit and the uses are looked
        at first, and all are counted only if each has room (a refused request spends
        nothing). With the fixed window on Redis, one script whatever the number of limits.
        With an in-memory store the uses are spent in the database (``ledger``). None: the
        store is unreachable and failing open."""
        limits = self.limits(override, own)
        if uses is not None and not self.shared:
            assert ledger is not None, "uses counted in the database need the ledger"
            return await self._charge_in_database(kind, ident, limits, uses, ledger)
        if isinstance(self.strategy, FixedWindowRateLimiter):

            async def fixed() -> Verdict:
                return (await self._fixed(kind=kind, ident=ident, limits=limits, uses=uses))[1]

            return await self._guard(fixed)

        async def other() -> Verdict:
            # limits' other strategies, as limits decides them: a call or two per limit.
            windows = await self._look_windows(kind, ident, limits)
            if not all(d.allowed for d in windows):
                return _verdict(windows, None, False)
            used = None
            if uses is not None:
                _, [(spent, _)], done = await self.counters.decide(
                    count=[(self._uses_key(uses), uses.quota, uses.expiry(time.time()))]
                )
                used = _uses_decision(uses, spent, done)
                if not done:
                    return _verdict(windows, used, False)
            return _verdict(await self._hit_windows(kind, ident, limits), used, True)

        return await self._guard(other)

    async def _charge_in_database(
        self, kind: str, ident: str, limits: Sequence[Limit], uses: Uses, ledger: UsesLedger
    ) -> Verdict:
        """In memory, with uses spent in the database: one request of the key at a time
        (the in-memory windows are this process's alone), its limits looked at, a use spent
        by one conditional UPDATE, then the limits counted."""
        lock = self._locks.get(uses.key_id)
        if lock is None:
            lock = self._locks[uses.key_id] = asyncio.Lock()
        async with lock:
            windows = await self._look_windows(kind, ident, limits)
            if not all(d.allowed for d in windows):
                return _verdict(windows, None, False)
            spent = await ledger.spend(uses)
            if spent is None:
                return _verdict(windows, _uses_decision(uses, uses.quota, False), False)
            counted = await self._hit_windows(kind, ident, limits)
            return _verdict(counted, _uses_decision(uses, spent, True), True)

    async def report(
        self,
        *,
        kind: str,
        ident: str,
        override: str | None,
        own: Policy = "client",
        uses: Uses | None = None,
        ledger: UsesLedger | None = None,
    ) -> RateLimitReport | None:
        """GET /rate_limit for an identified caller (``kind`` "key" or "client"): its own
        budget (``rate_limit_reads``) counted by one, and the caller's limits and uses that
        ``charge`` counts only read, in one call to the store (on Redis one script: the same
        keys and counts as ``charge``'s, so exact across instances; uses kept in the database
        are read there). None: the store is unreachable and failing open."""
        limits = self.limits(override, own)
        reads = self.reads_limit
        reads_key = ("rate_limit_reads", kind, ident)
        in_store = uses if uses is not None and self.shared else None

        async def call() -> RateLimitReport:
            used: Decision | None = None
            if isinstance(self.strategy, FixedWindowRateLimiter):
                look: list[Look] = [
                    (self._key(limit.item, kind, ident), _NO_GATE) for limit in limits
                ]
                if in_store is not None:
                    look.append((self._uses_key(in_store), _NO_GATE))
                looked, [(spent, reads_reset)], _ = await self.counters.decide(
                    look=look,
                    count=[(self._key(reads, *reads_key), _NO_GATE, reads.get_expiry())],
                )
                read = _decision(
                    reads,
                    "rate_limit_reads",
                    spent <= reads.amount,
                    max(0, reads.amount - spent),
                    reads_reset,
                )
                # Read, not counted: nothing is refused (no Retry-After on the 200).
                windows = [
                    _decision(limit.item, limit.name, True, max(0, limit.item.amount - found), at)
                    for limit, (found, at) in zip(limits, looked, strict=False)
                ]
                if in_store is not None:
                    used = _uses_decision(in_store, looked[-1][0], True)
            else:
                # limits' other strategies: a hit and a look at the window, and a look each.
                allowed = await self.strategy.hit(reads, self.key_prefix, *reads_key)
                stats = await self.strategy.get_window_stats(reads, self.key_prefix, *reads_key)
                read = _decision(
                    reads, "rate_limit_reads", allowed, stats.remaining, stats.reset_time
                )
                windows = []
                for limit in limits:
                    found = await self.strategy.get_window_stats(
                        limit.item, self.key_prefix, kind, ident
                    )
                    windows.append(
                        _decision(limit.item, limit.name, True, found.remaining, found.reset_time)
                    )
                if in_store is not None:
                    looked, _, _ = await self.counters.decide(
                        look=[(self._uses_key(in_store), _NO_GATE)]
                    )
                    used = _uses_decision(in_store, looked[0][0], True)
            return RateLimitReport(
                kind, ident, tuple(windows), read, used, None if uses is None else uses.refill
            )

        found = await self._guard(call)
        if found is not None and uses is not None and in_store is None:
            assert ledger is not None, "uses counted in the database need the ledger"
            spent = await ledger.spent(uses)
            used = _uses_decision(uses, spent, True)
            found = RateLimitReport(kind, ident, found.limits, found.reads, used, uses.refill)
        return found

    async def spent_uses(self, uses: Sequence[Uses]) -> list[int]:
        """The uses spent of keys whose uses the store counts (``shared``), in one call."""
        if not uses:
            return []
        looked, _, _ = await self.counters.decide(
            look=[(self._uses_key(u), _NO_GATE) for u in uses]
        )
        return [found for found, _ in looked]

    async def admit(
        self, *, ip: str, client_id: str, override: str | None, charge: bool
    ) -> tuple[Decision | None, Verdict | None]:
        """A proven OAuth client at the token endpoints, in one call to the store: the
        failed-authentication budgets of its address and of (address, client id) looked at
        and, if both have room and ``charge``, the client's own limits counted. Returns the
        most depleted failure budget and the charge (None: not counted, or failing open)."""
        keys = _failure_keys(ip, client_id)
        item = self.failure_limit
        limits = self.limits(override, "client")
        if not isinstance(self.strategy, FixedWindowRateLimiter):
            failing = await self.failures(ip=ip, client_id=client_id, record=False)
            if (failing is not None and not failing.allowed) or not charge:
                return failing, None
            return failing, await self.charge(kind="client", ident=client_id, override=override)

        async def call() -> tuple[Decision | None, Verdict | None]:
            looked, verdict = await self._fixed(
                kind="client",
                ident=client_id,
                limits=limits if charge else (),
                uses=None,
                look=[(self._key(item, *key), item.amount) for key in keys],
            )
            top = item.amount
            failing = _most_depleted(
                [
                    _decision(item, "auth-failures", found < top, max(0, top - found), reset)
                    for found, reset in looked
                ]
            )
            return failing, verdict if charge else None

        decided = await self._guard(call)
        return (None, None) if decided is None else decided

    async def failures(self, *, ip: str, client_id: str | None, record: bool) -> Decision | None:
        """The failed-authentication budgets of this address, and of (address, client id).

        With ``record`` a failure is counted; without, the budgets are only looked at. The
        most depleted of the two is returned.
        """
        keys = _failure_keys(ip, client_id)
        item = self.failure_limit
        top = item.amount

        async def call() -> Decision | None:
            if isinstance(self.strategy, FixedWindowRateLimiter):
                names = [self._key(item, *key) for key in keys]
                if record:
                    _, counted, _ = await self.counters.decide(
                        count=[(name, _NO_GATE, item.get_expiry()) for name in names]
                    )
                    return _most_depleted(
                        [
                            _decision(item, "auth-failures", n <= top, max(0, top - n), at)
                            for n, at in counted
                        ]
                    )
                looked, _, _ = await self.counters.decide(look=[(name, _NO_GATE) for name in names])
                return _most_depleted(
                    [
                        _decision(item, "auth-failures", n < top, max(0, top - n), at)
                        for n, at in looked
                    ]
                )
            # limits' other strategies, as limits decides them: a call or two per budget.
            found = []
            for key in keys:
                if record:
                    allowed = await self.strategy.hit(item, self.key_prefix, *key)
                else:
                    allowed = await self.strategy.test(item, self.key_prefix, *key)
                stats = await self.strategy.get_window_stats(item, self.key_prefix, *key)
                found.append(
                    _decision(item, "auth-failures", allowed, stats.remaining, stats.reset_time)
                )
            return _most_depleted(found)

        return await self._guard(call)

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
    limiter: Limiter,
    scope: Scope,
    *,
    kind: str,
    ident: str,
    override: str | None,
    own: Policy = "client",
    uses: Uses | None = None,
    ledger: UsesLedger | None = None,
) -> None:
    """Charge an identified caller's limits (and a key's uses); their headers go on the
    response, or a 429 naming the limit reached."""
    verdict = await limiter.charge(
        kind=kind, ident=ident, override=override, own=own, uses=uses, ledger=ledger
    )
    _publish(scope, verdict)
    if verdict is not None and not verdict.allowed:
        raise verdict.refusal()


async def report(
    limiter: Limiter,
    scope: Scope,
    *,
    kind: str,
    ident: str,
    override: str | None,
    own: Policy = "client",
    uses: Uses | None = None,
    ledger: UsesLedger | None = None,
) -> None:
    """GET /rate_limit: the caller's ``rate_limit_reads`` budget charged (a 429 past it, with
    that budget's headers), its limits and uses read, the limits published as this response's
    headers and all as the report the handler shows (``rate_limit_report_of``). Failing open:
    no report, nothing spent."""
    found = await limiter.report(
        kind=kind, ident=ident, override=override, own=own, uses=uses, ledger=ledger
    )
    if found is None:
        return
    if not found.reads.allowed:
        _publish(scope, found.reads)
        raise found.reads.refusal()
    _publish(scope, Verdict(found.limits))
    request_state(scope)[RATE_LIMIT_REPORT] = found


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


def _publish(scope: Scope, decision: Decision | Verdict | None) -> None:
    if decision is not None:
        request_state(scope)[RATE_LIMIT] = decision


def rate_limit_report_of(scope: Scope) -> RateLimitReport | None:
    """What GET /rate_limit shows this request's caller (None: the store was unreachable)."""
    found: RateLimitReport | None = scope.get("state", {}).get(RATE_LIMIT_REPORT)
    return found


def rate_limit_of(scope: Scope) -> Decision | Verdict | None:
    """The decision to report in this request's response headers, if a budget was looked at."""
    found: Decision | Verdict | None = scope.get("state", {}).get(RATE_LIMIT)
    return found


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
