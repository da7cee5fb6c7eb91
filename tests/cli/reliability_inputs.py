"""Builds the broken inputs of tests/cli/test_reliability.sh (issue 17) from a small
synthetic checkpoint (lmpress synth --preset tiny), a GGUF converted from it and a
logits file exported from it. Pure Python + numpy + h5py (what CI has); no torch.

usage: reliability_inputs.py WHAT DIR [args]   (WHAT: hf, gguf, h5)"""
import json, os, shutil, struct, sys

import numpy as np

# ---------------------------------------------------------------- safetensors
def st_read(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop('__metadata__', None)
    data = b[8 + n:]
    return h, meta, data

def st_write(path, tensors, meta=None):
    """tensors: list of (name, dtype, shape, bytes)"""
    h, off, blobs = {}, 0, []
    for name, dt, shape, raw in tensors:
        h[name] = {'dtype': dt, 'shape': list(shape), 'data_offsets': [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    if meta:
        h['__metadata__'] = meta
    hb = json.dumps(h).encode()
    hb += b' ' * ((8 - len(hb) % 8) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(hb)) + hb + b''.join(blobs))

def st_tensors(path):
    h, meta, data = st_read(path)
    out = []
    for name, v in sorted(h.items(), key=lambda kv: kv[1]['data_offsets'][0]):
        a, b = v['data_offsets']
        out.append([name, v['dtype'], v['shape'], data[a:b]])
    return out, meta

def hf_variant(src, dst, cfg_patch=None, drop=(), add=(), poke=None, reshape=()):
    """copy of the HF folder src with config keys patched, tensors dropped/added and
    poke = (tensor, flat index, float value) written into one element"""
    shutil.copytree(src, dst)
    cfgp = os.path.join(dst, 'config.json')
    cfg = json.load(open(cfgp))
    for k, v in (cfg_patch or {}).items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    json.dump(cfg, open(cfgp, 'w'), indent=1)
    stp = os.path.join(dst, 'model.safetensors')
    ts, meta = st_tensors(stp)
    ts = [t for t in ts if t[0] not in drop]
    dt = ts[0][1]
    esz = {'F32': 4, 'F16': 2, 'BF16': 2}[dt]
    for name, shape in add:
        ts.append([name, dt, shape, b'\0' * (esz * int(np.prod(shape)))])
    for name, shape in reshape:
        for t in ts:
            if t[0] == name:
                t[2] = shape
                t[3] = b'\0' * (esz * int(np.prod(shape)))
    if poke:
        for t in ts:
            if t[0] == poke[0]:
                raw = bytearray(t[3])
                x = np.array([poke[2]], dtype=np.float32)
                v = {'F32': x.tobytes(), 'F16': x.astype(np.float16).tobytes(),
                     'BF16': struct.pack('<H', int(x.view(np.uint32)[0] >> 16))}[t[1]]
                raw[esz * poke[1]:esz * poke[1] + esz] = v
                t[3] = bytes(raw)
    st_write(stp, ts, meta)

# ---------------------------------------------------------------- GGUF
TSZ = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

class Gguf:
    def __init__(self, path):
        b = open(path, 'rb').read()
        self.b = b
        assert b[:4] == b'GGUF'
        self.version, nt, nkv = struct.unpack_from('<IQQ', b, 4)
        p = 24
        self.kv = []  # [key, type, raw value bytes, offset of value]
        for _ in range(nkv):
            key, p = self._str(p)
            t = struct.unpack_from('<I', b, p)[0]
            p += 4
            q = self._skip(p, t)
            self.kv.append([key, t, b[p:q]])
            p = q
        self.ti = []  # [name, dims, type, offset]
        for _ in range(nt):
            name, p = self._str(p)
            nd = struct.unpack_from('<I', b, p)[0]
            dims = list(struct.unpack_from('<%dQ' % nd, b, p + 4))
            p += 4 + 8 * nd
            t, off = struct.unpack_from('<IQ', b, p)
            p += 12
            self.ti.append([name, dims, t, off])
        self.align = 32
        for k in self.kv:
            if k[0] == 'general.alignment':
                self.align = struct.unpack('<I', k[2])[0]
        self.data_start = (p + self.align - 1) // self.align * self.align
        self.data = bytearray(b[self.data_start:])

    def _str(self, p):
        n = struct.unpack_from('<Q', self.b, p)[0]
        return self.b[p + 8:p + 8 + n].decode('utf-8', 'surrogateescape'), p + 8 + n

    def _skip(self, p, t):
        if t == 8:
            return p + 8 + struct.unpack_from('<Q', self.b, p)[0]
        if t == 9:
            at, n = struct.unpack_from('<IQ', self.b, p)
            p += 12
            for _ in range(n):
                p = self._skip(p, at)
            return p
        return p + TSZ[t]

    def get(self, key):
        for k in self.kv:
            if k[0] == key:
                return k
        raise KeyError(key)

    def set_scalar(self, key, fmt, value):
        k = self.get(key)
        k[2] = struct.pack(fmt, value)

    def tensor(self, name):
        for t in self.ti:
            if t[0] == name:
                return t
        raise KeyError(name)

    def write(self, path, n_tensors=None):
        def s(x):
            x = x.encode('utf-8', 'surrogateescape') if isinstance(x, str) else x
            return struct.pack('<Q', len(x)) + x
        out = bytearray(b'GGUF' + struct.pack('<IQQ', self.version,
                                              len(self.ti) if n_tensors is None else n_tensors, len(self.kv)))
        for key, t, raw in self.kv:
            out += s(key) + struct.pack('<I', t) + raw
        for name, dims, t, off in self.ti:
            out += s(name) + struct.pack('<I', len(dims)) + struct.pack('<%dQ' % len(dims), *dims) + struct.pack('<IQ', t, off)
        out += b'\0' * ((self.align - len(out) % self.align) % self.align)
        open(path, 'wb').write(bytes(out) + bytes(self.data))

def str_array(strs):
    raw = struct.pack('<IQ', 8, len(strs))
    for x in strs:
        raw += struct.pack('<Q', len(x)) + x
    return raw

def gguf_variants(src, d):
    def base():
        return Gguf(src)
    g = base(); g.set_scalar('llama.block_count', '<I', struct.unpack('<I', g.get('llama.block_count')[2])[0] - 1)
    g.write(os.path.join(d, 'gg_block_count_low.gguf'))
    g = base(); g.set_scalar('llama.block_count', '<I', struct.unpack('<I', g.get('llama.block_count')[2])[0] + 1)
    g.write(os.path.join(d, 'gg_block_count_high.gguf'))
    g = base()
    k = g.get('tokenizer.ggml.tokens')
    at, n = struct.unpack_from('<IQ', k[2], 0)
    p, strs = 12, []
    for _ in range(n):
        m = struct.unpack_from('<Q', k[2], p)[0]
        strs.append(k[2][p + 8:p + 8 + m]); p += 8 + m
    k[2] = str_array(strs[:-7])
    g.write(os.path.join(d, 'gg_vocab_short.gguf'))
    g = base(); k[2] = str_array(strs[:5] + [b'a\xffb'] + strs[6:]); g2 = base(); g2.get('tokenizer.ggml.tokens')[2] = k[2]
    g2.write(os.path.join(d, 'gg_vocab_bad_utf8.gguf'))
    g = base(); g.write(os.path.join(d, 'gg_tensor_count_low.gguf'), n_tensors=len(g.ti) - 1)
    g = base(); t = g.tensor('output_norm.weight'); t[1] = [0]
    g.write(os.path.join(d, 'gg_dim_zero.gguf'))
    for key, val, tag in [('llama.attention.layer_norm_rms_epsilon', float('nan'), 'eps_nan'),
                          ('llama.attention.layer_norm_rms_epsilon', -1.0, 'eps_neg'),
                          ('llama.rope.freq_base', 0.0, 'theta_zero'),
                          ('llama.rope.freq_base', float('nan'), 'theta_nan'),
                          ('llama.context_length', None, 'ctx_huge')]:
        g = base()
        if val is None:
            g.set_scalar(key, '<I', 4294967295)
        else:
            g.set_scalar(key, '<f', val)
        g.write(os.path.join(d, 'gg_%s.gguf' % tag))
    # NaN at file row 5 of blk.0.attn_q.weight (ggml's interleaved RoPE row order)
    g = base(); t = g.tensor('blk.0.attn_q.weight')
    cols = t[1][0]
    esz = {0: 4, 1: 2, 30: 2}[t[2]]
    nan = {0: struct.pack('<f', float('nan')), 1: struct.pack('<H', 0x7e00), 30: struct.pack('<H', 0x7fc0)}[t[2]]
    off = t[3] + (5 * cols + 3) * esz
    g.data[off:off + esz] = nan
    g.write(os.path.join(d, 'gg_nan_attn_q_row5.gguf'))
    # an extra tensor llama does not use
    g = base()
    end = len(g.data)
    g.ti.append(['blk.0.mystery.weight', [4], 0, end])
    g.data += b'\0' * 16 + b'\0' * ((g.align - 16 % g.align) % g.align)
    g.write(os.path.join(d, 'gg_extra_tensor.gguf'))

# ---------------------------------------------------------------- HDF5 logits
def h5_variants(src, d):
    import h5py
    def variant(name, fn):
        p = os.path.join(d, name)
        shutil.copy(src, p)
        with h5py.File(p, 'r+') as f:
            fn(f)
    def setv(ds, idx, v):
        def f(h):
            a = h[ds][...]
            a[idx] = v
            h[ds][...] = a
        return f
    variant('h5_lse_nan.h5', setv('logsumexp', (0, 2), np.nan))
    variant('h5_target_inf.h5', setv('target_logprob', (0, 1), -np.inf))
    variant('h5_topk_positive.h5', setv('topk_logprobs', (0, 1, 0), 0.5))
    variant('h5_topk_nan.h5', setv('topk_logprobs', (0, 1, 1), np.nan))
    variant('h5_rest_above1.h5', setv('rest_mass', (0, 3), 1.5))
    variant('h5_rest_negative.h5', setv('rest_mass', (0, 3), -0.25))
    def dup(h):
        a = h['topk_ids'][...]
        a[0, 2, 1] = a[0, 2, 0]
        h['topk_ids'][...] = a
    variant('h5_topk_dup.h5', dup)
    variant('h5_topk_id_range.h5', setv('topk_ids', (0, 0, 0), 100000))
    # a flipped byte inside the stored chunk of target_logprob (row 0)
    p = os.path.join(d, 'h5_flipped_byte.h5')
    shutil.copy(src, p)
    with h5py.File(p, 'r') as f:
        info = f['target_logprob'].id.get_chunk_info(0)
        off, size = info.byte_offset, info.size
    b = bytearray(open(p, 'rb').read())
    b[off + size // 2] ^= 0x10
    open(p, 'wb').write(bytes(b))
    # the same file as an older lmpress wrote it: no Fletcher32 filter
    p = os.path.join(d, 'h5_no_checksum.h5')
    with h5py.File(src, 'r') as f, h5py.File(p, 'w') as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        for name, ds in f.items():
            g.create_dataset(name, data=ds[...], maxshape=(None,) + ds.shape[1:], chunks=(1,) + ds.shape[1:])

if __name__ == '__main__':
    what, d = sys.argv[1], sys.argv[2]
    if what == 'hf':
        src = sys.argv[3]
        cfg = json.load(open(os.path.join(src, 'config.json')))
        L, V = cfg['num_hidden_layers'], cfg['vocab_size']
        H = cfg['hidden_size']
        hf_variant(src, os.path.join(d, 'hf_vocab_big'), {'vocab_size': V + 77})
        hf_variant(src, os.path.join(d, 'hf_layers_high'), {'num_hidden_layers': L + 1})
        hf_variant(src, os.path.join(d, 'hf_layers_low'), {'num_hidden_layers': L - 1})
        hf_variant(src, os.path.join(d, 'hf_maxpos_neg'), {'max_position_embeddings': -1})
        hf_variant(src, os.path.join(d, 'hf_no_norm'), drop=('model.norm.weight',))
        hf_variant(src, os.path.join(d, 'hf_stray_layer9'), add=(('model.layers.9.input_layernorm.weight', [H]),))
        hf_variant(src, os.path.join(d, 'hf_attn_bias_missing'), {'attention_bias': True})
        hf_variant(src, os.path.join(d, 'hf_unknown_tensor'), add=(('model.mystery.weight', [H]),))
        hf_variant(src, os.path.join(d, 'hf_bias_unused'), add=(('model.layers.0.self_attn.q_proj.bias', [H]),))
        hf_variant(src, os.path.join(d, 'hf_bos_range'), {'bos_token_id': V + 5})
        hf_variant(src, os.path.join(d, 'hf_eps_zero'), {'rms_norm_eps': 0})
        hf_variant(src, os.path.join(d, 'hf_norm_empty'), reshape=(('model.norm.weight', [0]),))
        hf_variant(src, os.path.join(d, 'hf_nan_up_row3'), poke=('model.layers.0.mlp.up_proj.weight', 3 * H + 7, float('nan')))
        hf_variant(src, os.path.join(d, 'hf_inf_embed'), poke=('model.embed_tokens.weight', 11, float('inf')))
        # tokenizer.json variants
        tj = json.load(open(os.path.join(src, 'tokenizer.json')))
        def tok_variant(name, fn, raw=None):
            p = os.path.join(d, name)
            shutil.copytree(src, p)
            t = json.loads(json.dumps(tj))
            fn(t)
            s = json.dumps(t, ensure_ascii=False).encode()
            if raw:
                s = raw(s)
            open(os.path.join(p, 'tokenizer.json'), 'wb').write(s)
        vocab = tj['model']['vocab']
        some = sorted(vocab, key=vocab.get)[300]
        tok_variant('tok_bad_utf8', lambda t: None, raw=lambda s: s.replace(json.dumps(some, ensure_ascii=False).encode(), b'"ab\xff\xfe"', 1))
        tok_variant('tok_nul', lambda t: None, raw=lambda s: s.replace(json.dumps(some, ensure_ascii=False).encode(), b'"a\\u0000b"', 1))
        def big_id(t):
            t['added_tokens'].append({'id': 100000, 'content': '<extra_big>', 'single_word': False, 'lstrip': False,
                                      'rstrip': False, 'normalized': False, 'special': True})
        tok_variant('tok_id_100000', big_id)
        def bos_moved(t):
            for a in t['added_tokens']:
                if a['id'] == cfg['bos_token_id']:
                    a['id'] = 5
        tok_variant('tok_bos_other_id', bos_moved)
        def past_rows(t):
            t['added_tokens'].append({'id': V, 'content': '<one_past>', 'single_word': False, 'lstrip': False,
                                      'rstrip': False, 'normalized': False, 'special': True})
        tok_variant('tok_past_embedding', past_rows)
    elif what == 'gguf':
        gguf_variants(sys.argv[3], d)
    elif what == 'h5':
        h5_variants(sys.argv[3], d)
