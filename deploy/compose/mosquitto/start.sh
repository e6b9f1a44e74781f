#!/bin/sh
# Make the password file from the compose secret (mosquitto_passwd hashes it), then run the
# broker with the image's entrypoint (which drops to the mosquitto user).
set -eu
pw=/mosquitto/data/passwd
umask 077
: > "$pw"
mosquitto_passwd -b "$pw" "${MQTT_USER:-streamcount}" "$(cat /run/secrets/mqtt_password)"
chown mosquitto:mosquitto "$pw"
exec /docker-entrypoint.sh /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf
