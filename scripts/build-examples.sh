#!/usr/bin/env bash
# Builds the example bundles from source in the repo:
#   conf/examples/hello.tar.gz  (Go server + gear-app.conf)
#   conf/examples/web.tar.gz    (the same server, four instances on one listen port)
#   conf/examples/chat.tar.gz   (Redis global channel across two executors)
#   conf/examples/hello.jar     (java, Main-Class: Hello) -- only when javac is installed
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/hello" ./conf/examples/hello
cp conf/examples/hello/gear-app.conf "$tmp/"
tar -C "$tmp" -czf conf/examples/hello.tar.gz.tmp gear-app.conf hello
mv conf/examples/hello.tar.gz.tmp conf/examples/hello.tar.gz
echo "built conf/examples/hello.tar.gz"
mkdir -p "$tmp/web"
cp "$tmp/hello" "$tmp/web/hello"
cp conf/examples/web/gear-app.conf "$tmp/web/"
tar -C "$tmp/web" -czf conf/examples/web.tar.gz.tmp gear-app.conf hello
mv conf/examples/web.tar.gz.tmp conf/examples/web.tar.gz
echo "built conf/examples/web.tar.gz (four instances on one listen port)"
mkdir -p "$tmp/chat"
CGO_ENABLED=0 go build -o "$tmp/chat/chat" ./conf/examples/chat
cp conf/examples/chat/gear-app.conf "$tmp/chat/"
tar -C "$tmp/chat" -czf conf/examples/chat.tar.gz.tmp gear-app.conf chat
mv conf/examples/chat.tar.gz.tmp conf/examples/chat.tar.gz
echo "built conf/examples/chat.tar.gz (needs gear.channel.redis)"
if command -v javac >/dev/null 2>&1 && command -v jar >/dev/null 2>&1; then
  mkdir -p "$tmp/classes"
  javac -d "$tmp/classes" conf/examples/java/Hello.java
  jar --create --file conf/examples/hello.jar.tmp --main-class Hello -C "$tmp/classes" .
  mv conf/examples/hello.jar.tmp conf/examples/hello.jar
  echo "built conf/examples/hello.jar"
else
  echo "javac not found: skipped conf/examples/hello.jar (apt-get install -y default-jdk-headless)" >&2
fi
