"""The monitor: judges every service each interval, records each state transition once in
Redis (however many monitors run) and delivers notifications to webhooks."""
