#!/bin/sh
# Read once at start, then the same files every APP_INTERVAL seconds until stopped.
cat /app/startup.txt > /dev/null
while true; do
    cat /etc/os-release /app/config.txt > /dev/null
    sleep "${APP_INTERVAL:-5}"
done
