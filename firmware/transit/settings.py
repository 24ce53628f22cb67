"""Ranges of every tuning group a device.json may set (and a command may change).

Validation happens at boot, before the pipeline stages are imported, so the
ranges live here where config.py finds them; each stage keeps its own
defaults next to the code that uses them (track.DEFAULTS, doors.DEFAULTS,
stops.DEFAULTS, gates.DEFAULTS, roster.DEFAULTS, uplink.DEFAULTS).
"""

GROUPS = {
    "track": {
        "period_moving_s": (5, 3600), "period_stopped_s": (30, 7200), "distance_m": (20, 5000),
        "heading_deg": (3, 180), "heading_min_speed_cmps": (0, 2000), "speed_delta_cmps": (100, 4000),
        "stop_speed_cmps": (0, 1000), "stop_confirm_s": (1, 60), "move_speed_cmps": (0, 2000),
        "odo_min_speed_cmps": (0, 1000), "jitter_m": (0, 200), "max_hdop_x10": (10, 255),
        "max_speed_cmps": (1000, 10000), "lost_after_s": (2, 600),
    },
    "counting": {
        "debounce_ms": (1, 500), "linger_ms": (500, 60000), "fault_ms": (10000, 3600000),
        "grace_ms": (0, 30000), "switch_debounce_ms": (0, 1000), "bunch_us": (50, 50000),
        "tailgate_gap_ms": (20, 2000), "ring_size": (16, 512), "merge_s": (0, 600), "merge_m": (0, 500),
        "late_ms": (20, 2000),
        "period_s": (60, 3600),
    },
    "queue": {"commit_ms": (1000, 600000), "commit_records": (1, 1024), "budget_kib": (64, 4096)},
    "uplink": {"batch_s": (0, 600), "ack_ms": (100, 60000), "connect_ms": (200, 60000),
               "backoff_min_ms": (50, 600000), "backoff_max_ms": (100, 3600000), "msg_records": (1, 64),
               "verify": (0, 1)},
    "time": {"sntp_timeout_ms": (200, 10000), "sntp_every_s": (600, 86400), "retry_s": (10, 3600),
             "floor_every_s": (600, 86400)},
    "roster": {"scan_ms": (500, 30000), "scan_every_s": (5, 3600), "away_s": (60, 86400),
               "min_rssi": (-120, 0), "max_buses": (1, 256)},
}
