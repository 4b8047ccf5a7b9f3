"""core.settings: values that stop start-up, with one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import SettingsError, key_directory, load_settings


def test_public_url_is_a_bare_http_base(subtests: pytest.Subtests) -> None:
    for given, kept in [
        ("https://api.example.com", "https://api.example.com"),
        ("https://api.example.com/", "https://api.example.com"),
        ("http://127.0.0.1:8000/shop/", "http://127.0.0.1:8000/shop"),
        ("", None),
    ]:
        with subtests.test(given=given):
            assert load_settings(_env_file=None, public_url=given).public_url == kept
    for bad in [
        "api.example.com",
        "ftp://api.example.com",
        "https://",
        "https://api.example.com/?a=1",
        "https://api.example.com/#top",
        "https://api.example.com?",
        "https://user:pw@api.example.com",
        "https://api.example.com:99999",
        "javascript:alert(1)",
    ]:
        with subtests.test(bad=bad), pytest.raises(SettingsError) as raised:
            load_settings(_env_file=None, public_url=bad)
        assert str(raised.value).startswith("invalid STOREFRONT_PUBLIC_URL: ")
        assert "\n" not in str(raised.value)


def test_public_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_PUBLIC_URL", "https://shop.example/api/")
    assert load_settings(_env_file=None).public_url == "https://shop.example/api"


def test_forwarded_allow_ips_are_addresses_or_networks(subtests: pytest.Subtests) -> None:
    assert load_settings(_env_file=None).forwarded_allow_ips == []  # trust no proxy at all
    for given, kept in [
        ("127.0.0.1", ["127.0.0.1"]),
        ("10.0.0.5, 10.1.0.0/16,::1", ["10.0.0.5", "10.1.0.0/16", "::1"]),
        ("fd00::/8", ["fd00::/8"]),
        ("*", ["*"]),
        ("", []),
    ]:
        with subtests.test(given=given):
            assert (
                load_settings(_env_file=None, forwarded_allow_ips=given).forwarded_allow_ips == kept
            )
    for bad in ["localhost", "10.0.0.300", "10.0.0.0/33", "*, 10.0.0.1", "10.0.0.1 10.0.0.2"]:
        with subtests.test(bad=bad), pytest.raises(SettingsError) as raised:
            load_settings(_env_file=None, forwarded_allow_ips=bad)
        assert str(raised.value).startswith("invalid STOREFRONT_FORWARDED_ALLOW_IPS: ")


def test_generated_keys_live_beside_a_sqlite_database(subtests: pytest.Subtests) -> None:
    for url, key_dir in [
        ("sqlite:///storefront.db", Path("storefront-keys")),  # the default: as before
        ("sqlite:////srv/shop/shop.db", Path("/srv/shop/shop-keys")),
        ("sqlite+aiosqlite:///data/a.sqlite3", Path("data/a-keys")),
        # No file of its own: the working directory's.
        ("sqlite://", Path("storefront-keys")),
        ("sqlite:///:memory:", Path("storefront-keys")),
        ("postgresql://shop@db.internal/shop", Path("storefront-keys")),
    ]:
        with subtests.test(url=url):
            settings = load_settings(_env_file=None, database_url=url)
            assert key_directory(settings) == key_dir
    # STOREFRONT_KEY_DIR, when set, wins.
    chosen = load_settings(_env_file=None, database_url="sqlite:////srv/a.db", key_dir="/keys")
    assert key_directory(chosen) == Path("/keys")


def test_the_rate_limit_store_is_one_the_limiter_can_use(subtests: pytest.Subtests) -> None:
    for kept in [
        "memory://",
        "redis://127.0.0.1:6379/2",
        "rediss://r.example:6380",
        "redis+sentinel://s1:26379,s2:26379/storefront",
    ]:
        with subtests.test(kept=kept):
            assert load_settings(_env_file=None, rate_limit_storage_url=kept)
    # A Redis Cluster was accepted here and then failed at start with a traceback.
    for bad in ["redis+cluster://127.0.0.1:7000", "memcached://x", "redis+sentinel://s1"]:
        with subtests.test(bad=bad), pytest.raises(SettingsError) as raised:
            load_settings(_env_file=None, rate_limit_storage_url=bad)
        assert str(raised.value).startswith("invalid STOREFRONT_RATE_LIMIT_STORAGE_URL: ")
