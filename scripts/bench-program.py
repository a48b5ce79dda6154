#!/usr/bin/env python3
"""The gamification benchmark program (issue 10): the demo program (src/gamify/demo_program.json,
the first argument) grown to 20 earning rules, 5 tiers and 50 levels, printed as JSON. Used by
scripts/bench-gamify.sh and scripts/events-ab.sh, so both load the same program."""
import json
import sys

p = json.load(open(sys.argv[1]))
cats = ["toys", "books", "fashion", "beauty", "garden", "sports", "music", "food"]
while len(p["rules"]) < 20:
    i = len(p["rules"])
    p["rules"].append({
        "id": f"bonus-{i}", "event": "purchase",
        "when": f"category = '{cats[i % len(cats)]}' AND amount_eur >= {10 * (i % 5 + 1)}",
        "points": {"fixed": 5 + i},
        "multipliers": [{"factor": 2, "customer": "tier IN ('GOLD', 'PLATINUM')"}],
        "caps": {"per_week": 200}, "pending_days": 14})
p["tiers"]["tiers"].append({"name": "PLATINUM", "min": 5000})
p["levels"]["thresholds"] = [0] + [100 * i * (i + 1) // 2 for i in range(1, 50)]
print(json.dumps(p))
