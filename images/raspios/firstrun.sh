#!/bin/bash
# First boot of board {{hostname}} on Raspberry Pi OS, written by `lab image prepare` from the
# template images/raspios/firstrun.sh. The kernel command line (cmdline.txt) runs it once, as
# root, before the system's normal start (systemd.run=...); it then removes itself and that
# hook, and the board reboots into its normal start with these settings.
#
# Until then this file holds the board's SSH host private key (and the Wi-Fi key when one was
# given): keep the card, and any copy of the image, to yourself.
set -eu

# --- The board's settings, filled in by lab (empty: not asked for) ------------------------
NEW_HOSTNAME={{hostname}}
LOGIN_USER={{user}}
AUTHORIZED_KEY={{ssh_key}}
STATIC_ADDRESS={{address}}   # address/prefix on eth0; empty: DHCP
GATEWAY={{gateway}}          # also the DNS server with a static address
TIMEZONE={{timezone}}
WIFI_SSID={{wifi_ssid}}
WIFI_PSK={{wifi_psk}}        # the WPA key derived from the passphrase (64 hex digits)
HOST_KEY_PUBLIC={{host_key_public}}
HOST_KEY_PRIVATE={{host_key_private}}

# The boot partition this script sits on: /boot (Bullseye) or /boot/firmware (Bookworm).
BOOT_DIR=$(dirname "$(readlink -f "$0")")

set_hostname() {
    echo "$NEW_HOSTNAME" >/etc/hostname
    if grep -q '^127\.0\.1\.1' /etc/hosts; then
        sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$NEW_HOSTNAME/" /etc/hosts
    else
        printf '127.0.1.1\t%s\n' "$NEW_HOSTNAME" >>/etc/hosts
    fi
}

# The login user, from userconf.txt beside this script (user:password hash). The password is
# random and known to nobody: logins are by key only.
setup_user() {
    local hash first
    hash=$(cut -d: -f2- "$BOOT_DIR/userconf.txt")
    first=$(getent passwd 1000 | cut -d: -f1 || true)
    if [ -n "$first" ] && [ "$first" != "$LOGIN_USER" ] && [ -x /usr/lib/userconf-pi/userconf ]; then
        /usr/lib/userconf-pi/userconf "$LOGIN_USER" "$hash"
    elif ! getent passwd "$LOGIN_USER" >/dev/null; then
        useradd --create-home --shell /bin/bash --groups sudo "$LOGIN_USER"
        # An older image's stock user (pi, password raspberry) can no longer log in.
        if [ -n "$first" ]; then usermod --lock "$first"; fi
    fi
    usermod --password "$hash" "$LOGIN_USER"
    rm -f "$BOOT_DIR/userconf.txt"
    systemctl disable userconfig.service 2>/dev/null || true
    install -d -m 755 /etc/sudoers.d
    printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$LOGIN_USER" >/etc/sudoers.d/010_lab-nopasswd
    chmod 0440 /etc/sudoers.d/010_lab-nopasswd
}

install_authorized_key() {
    local home group
    home=$(getent passwd "$LOGIN_USER" | cut -d: -f6)
    group=$(id -gn "$LOGIN_USER")
    install -d -m 700 -o "$LOGIN_USER" -g "$group" "$home/.ssh"
    printf '%s\n' "$AUTHORIZED_KEY" >"$home/.ssh/authorized_keys"
    chown "$LOGIN_USER:$group" "$home/.ssh/authorized_keys"
    chmod 600 "$home/.ssh/authorized_keys"
}

# The host key lab pinned when it made this image: the board's only host key, so the first
# `lab bootstrap` is verified. Raspberry Pi OS would otherwise make new keys on first boot.
install_host_key() {
    rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
    (umask 077 && printf '%s\n' "$HOST_KEY_PRIVATE" >/etc/ssh/ssh_host_ed25519_key)
    printf '%s\n' "$HOST_KEY_PUBLIC" >/etc/ssh/ssh_host_ed25519_key.pub
    chmod 600 /etc/ssh/ssh_host_ed25519_key
    chmod 644 /etc/ssh/ssh_host_ed25519_key.pub
    systemctl disable regenerate_ssh_host_keys.service 2>/dev/null || true
    systemctl enable ssh.service 2>/dev/null || true
}

# NetworkManager (Bookworm) gets keyfiles; dhcpcd + wpa_supplicant (Bullseye) their files.
configure_network() {
    if [ -d /etc/NetworkManager/system-connections ]; then
        configure_network_manager
    else
        configure_dhcpcd
    fi
    if [ -n "$WIFI_SSID" ]; then
        rfkill unblock wifi 2>/dev/null || true
        for state in /var/lib/systemd/rfkill/*:wlan; do
            if [ -e "$state" ]; then echo 0 >"$state"; fi
        done
    fi
}

configure_network_manager() {
    local dir=/etc/NetworkManager/system-connections
    if [ -n "$STATIC_ADDRESS" ]; then
        (umask 077 && cat >"$dir/lab-eth0.nmconnection" <<NM
[connection]
id=lab-eth0
type=ethernet
interface-name=eth0
autoconnect=true

[ipv4]
method=manual
address1=$STATIC_ADDRESS,$GATEWAY
dns=$GATEWAY;

[ipv6]
method=auto
NM
)
    fi
    if [ -n "$WIFI_SSID" ]; then
        (umask 077 && cat >"$dir/lab-wifi.nmconnection" <<NM
[connection]
id=lab-wifi
type=wifi
autoconnect=true

[wifi]
mode=infrastructure
ssid=$WIFI_SSID

[wifi-security]
key-mgmt=wpa-psk
psk=$WIFI_PSK

[ipv4]
method=auto

[ipv6]
method=auto
NM
)
    fi
}

configure_dhcpcd() {
    if [ -n "$STATIC_ADDRESS" ]; then
        cat >>/etc/dhcpcd.conf <<DHCPCD

# lab: the board's address from the inventory
interface eth0
static ip_address=$STATIC_ADDRESS
static routers=$GATEWAY
static domain_name_servers=$GATEWAY
DHCPCD
    fi
    if [ -n "$WIFI_SSID" ]; then
        mkdir -p /etc/wpa_supplicant
        (umask 077 && cat >/etc/wpa_supplicant/wpa_supplicant.conf <<WPA
ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev
update_config=1

network={
    ssid="$WIFI_SSID"
    psk=$WIFI_PSK
}
WPA
)
    fi
}

set_timezone() {
    [ -n "$TIMEZONE" ] || return 0
    if [ -f "/usr/share/zoneinfo/$TIMEZONE" ]; then
        ln -sf "/usr/share/zoneinfo/$TIMEZONE" /etc/localtime
        echo "$TIMEZONE" >/etc/timezone
    else
        echo "firstrun: no time zone $TIMEZONE in this system; left as it was" >&2
    fi
}

# Runs once: the hook goes from cmdline.txt (kept one line) and this file goes too.
remove_first_boot_hook() {
    sed -i 's| systemd\.run=[^ ]*||; s| systemd\.run_success_action=[^ ]*||; s| systemd\.unit=kernel-command-line\.target||' \
        "$BOOT_DIR/cmdline.txt"
    rm -f "$BOOT_DIR/firstrun.sh"
}

set_hostname
setup_user
install_authorized_key
install_host_key
configure_network
set_timezone
remove_first_boot_hook
exit 0
