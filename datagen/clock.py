"""Durations in progress lines of the data tools."""


def format_duration(seconds: float) -> str:
    """``1h02m03s`` or ``2m03s``: whole seconds, hours shown only when there are any."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
