"""Fetch the map's JavaScript/CSS so the app works without a CDN (filled in by the app issue)."""

from pathlib import Path

if __name__ == "__main__":
    (Path(__file__).parent / "static" / "vendor").mkdir(parents=True, exist_ok=True)
