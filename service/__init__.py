"""Encore: a ledger-first loyalty and retention service."""

import os

# Piccolo finds its engine and apps through this module (migrations, piccolo CLI, admin).
os.environ.setdefault("PICCOLO_CONF", "service.piccolo_conf")
