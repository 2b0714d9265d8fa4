//! A restricted unpickler for the `data.pkl` of `torch.save` zip checkpoints.
//!
//! Why not `candle_core::pickle`: it is written for trusted files. On hostile input it panics
//! (`Vec::remove` on tuples shorter than `_rebuild_tensor_v2` expects, a shift overflow in
//! `LONG1` with more than 8 bytes), allocates whatever a 32-bit length field says before checking
//! the input holds that many bytes, deep-clones memoised objects on every `BINGET` (a few hundred
//! bytes of pickle can demand exponential memory), and never checks a tensor's offset, shape and
//! strides against its storage. A checkpoint is user-supplied input, so none of that is
//! acceptable here.
//!
//! This unpickler never executes anything. It understands exactly the opcodes protocol-2
//! `torch.save` emits for state dicts, and only these globals:
//! `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`,
//! `collections.OrderedDict` and the `torch.*Storage` types. Any other global (`os.system`,
//! `builtins.eval`, ...) or opcode is an error naming it, raised before anything else happens.
//! Objects live in an arena and are referenced by index, so memo reuse copies nothing, cycles are
//! harmless, and memory is bounded by the length of the pickle. Every read is bounds-checked; the
//! parser has no recursion.

use std::collections::HashMap;

use candle_core::DType;

/// Error text of a rejected pickle (the caller adds the file name).
pub type PickleError = String;

type Id = usize;

/// A tensor as the pickle describes it: which storage, and the view into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    /// Storage key (the file `data/<key>` in the archive).
    pub storage: String,
    /// Element type of the storage.
    pub dtype: DType,
    /// Number of elements the pickle claims the storage has.
    pub storage_len: usize,
    /// Offset of the first element, in elements.
    pub offset: usize,
    /// Shape of the view.
    pub shape: Vec<usize>,
    /// Strides of the view, in elements.
    pub stride: Vec<usize>,
}

/// The globals a checkpoint may name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    RebuildTensor,
    RebuildParameter,
    OrderedDict,
    Storage(DType),
}

#[derive(Debug, Clone, PartialEq)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    Storage {
        key: String,
        dtype: DType,
        len: usize,
    },
    Tensor(TensorRef),
}

/// A parsed pickle: an arena of objects and the root.
#[derive(Debug)]
pub struct Pickle {
    arena: Vec<Obj>,
    root: Id,
}

/// A value of the parsed pickle, as the state-dict reader sees it.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    pickle: &'a Pickle,
    id: Id,
}

impl Pickle {
    /// The root object.
    pub fn root(&self) -> Node<'_> {
        Node {
            pickle: self,
            id: self.root,
        }
    }
}

impl<'a> Node<'a> {
    fn obj(&self) -> &'a Obj {
        &self.pickle.arena[self.id]
    }

    fn at(&self, id: Id) -> Node<'a> {
        Node {
            pickle: self.pickle,
            id,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self.obj() {
            Obj::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The tensor, if this is one.
    pub fn as_tensor(&self) -> Option<&'a TensorRef> {
        match self.obj() {
            Obj::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// The `(key, value)` pairs, if this is a dict (in insertion order).
    pub fn dict_items(&self) -> Option<Vec<(Node<'a>, Node<'a>)>> {
        match self.obj() {
            Obj::Dict(items) => Some(
                items
                    .iter()
                    .map(|&(k, v)| (self.at(k), self.at(v)))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The value under string key `key`, if this is a dict holding it.
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        self.dict_items()?
            .into_iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A short description of the kind of object, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.obj() {
            Obj::None => "None",
            Obj::Bool(_) => "bool",
            Obj::Int(_) => "int",
            Obj::Float(_) => "float",
            Obj::Str(_) => "str",
            Obj::Tuple(_) => "tuple",
            Obj::List(_) => "list",
            Obj::Dict(_) => "dict",
            Obj::Global(_) => "class",
            Obj::Storage { .. } => "storage",
            Obj::Tensor(_) => "tensor",
        }
    }
}

/// Parses a protocol-2 pickle of a state dict (see the module docs for what is accepted).
pub fn parse(data: &[u8]) -> Result<Pickle, PickleError> {
    let mut p = Parser {
        input: Reader { data, pos: 0 },
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = p.run()?;
    Ok(Pickle {
        arena: p.arena,
        root,
    })
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "truncated: needs {n} more bytes at offset {}, only {} left",
                self.pos,
                self.data.len() - self.pos
            )),
        }
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated: unterminated GLOBAL name")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "GLOBAL name is not UTF-8")?;
        self.pos += n + 1;
        Ok(s)
    }
}

struct Parser<'a> {
    input: Reader<'a>,
    arena: Vec<Obj>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
}

impl Parser<'_> {
    fn push(&mut self, obj: Obj) {
        self.arena.push(obj);
        self.stack.push(self.arena.len() - 1);
    }

    fn pop(&mut self) -> Result<Id, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("stack underflow below a MARK".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn top(&self) -> Result<Id, PickleError> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| "stack is empty".into())
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let mark = self.marks.pop().ok_or("MARK expected but none is open")?;
        if mark > self.stack.len() {
            return Err("corrupt MARK".into());
        }
        Ok(self.stack.split_off(mark))
    }

    fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            let op = self.input.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let v = self.input.u8()?;
                    if v > 5 {
                        return Err(format!("unsupported pickle protocol {v}"));
                    }
                }
                b'.' => {
                    // STOP
                    let root = self.pop()?;
                    return Ok(root);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.push(Obj::Dict(Vec::new())),
                b']' => self.push(Obj::List(Vec::new())),
                b')' => self.push(Obj::Tuple(Vec::new())),
                b'N' => self.push(Obj::None),
                0x88 => self.push(Obj::Bool(true)),
                0x89 => self.push(Obj::Bool(false)),
                b'K' => {
                    let v = self.input.u8()?;
                    self.push(Obj::Int(v.into()))
                }
                b'M' => {
                    let v = self.input.u16()?;
                    self.push(Obj::Int(v.into()))
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.input.array()?);
                    self.push(Obj::Int(v.into()))
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes
                    let n = usize::from(self.input.u8()?);
                    let bytes = self.input.take(n)?;
                    self.push(Obj::Int(long_from_bytes(bytes)?))
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.input.array()?);
                    self.push(Obj::Float(v))
                }
                b'X' => {
                    let n = self.input.u32()? as usize;
                    let s = utf8(self.input.take(n)?)?;
                    self.push(Obj::Str(s))
                }
                0x8c => {
                    // SHORT_BINUNICODE
                    let n = usize::from(self.input.u8()?);
                    let s = utf8(self.input.take(n)?)?;
                    self.push(Obj::Str(s))
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n
                        || self.marks.last().is_some_and(|&m| m > self.stack.len() - n)
                    {
                        return Err("stack underflow in TUPLE1/2/3".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Obj::Tuple(items))
                }
                b'a' => {
                    let v = self.pop()?;
                    let list = self.top()?;
                    self.list_mut(list)?.push(v)
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.list_mut(list)?.extend(items)
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let dict = self.top()?;
                    self.dict_mut(dict)?.push((k, v))
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err("SETITEMS with an odd number of items".into());
                    }
                    let dict = self.top()?;
                    let d = self.dict_mut(dict)?;
                    d.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                }
                b'q' => {
                    let i = self.input.u8()?;
                    self.memo_put(i.into())?
                }
                b'r' => {
                    let i = self.input.u32()?;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.input.u8()?;
                    self.memo_get(i.into())?
                }
                b'j' => {
                    let i = self.input.u32()?;
                    self.memo_get(i)?
                }
                b'c' => {
                    let module = self.input.line()?;
                    let name = self.input.line()?;
                    let g = allowed_global(module, name)?;
                    self.push(Obj::Global(g))
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.push(storage)
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let obj = self.reduce(callable, args)?;
                    self.push(obj)
                }
                b'b' => {
                    // BUILD: only OrderedDict state (`_metadata`) occurs; it is dropped.
                    let _state = self.pop()?;
                    let target = self.top()?;
                    if !matches!(self.arena[target], Obj::Dict(_)) {
                        return Err("BUILD on an object other than a dict is not supported".into());
                    }
                }
                other => {
                    return Err(format!(
                        "opcode 0x{other:02x} ({}) at offset {} is not used by PyTorch state dicts \
                         and is refused",
                        opcode_name(other),
                        self.input.pos - 1
                    ))
                }
            }
        }
    }

    fn list_mut(&mut self, id: Id) -> Result<&mut Vec<Id>, PickleError> {
        match &mut self.arena[id] {
            Obj::List(l) => Ok(l),
            _ => Err("APPEND(S) target is not a list".into()),
        }
    }

    fn dict_mut(&mut self, id: Id) -> Result<&mut Vec<(Id, Id)>, PickleError> {
        match &mut self.arena[id] {
            Obj::Dict(d) => Ok(d),
            _ => Err("SETITEM(S) target is not a dict".into()),
        }
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| format!("memo entry {key} used before it was set"))?;
        self.stack.push(id);
        Ok(())
    }

    fn int(&self, id: Id, what: &str) -> Result<i64, PickleError> {
        match self.arena[id] {
            Obj::Int(v) => Ok(v),
            _ => Err(format!("{what} must be an int")),
        }
    }

    fn usize(&self, id: Id, what: &str) -> Result<usize, PickleError> {
        usize::try_from(self.int(id, what)?).map_err(|_| format!("{what} is negative"))
    }

    fn usizes(&self, id: Id, what: &str) -> Result<Vec<usize>, PickleError> {
        match &self.arena[id] {
            Obj::Tuple(items) => items.iter().map(|&i| self.usize(i, what)).collect(),
            _ => Err(format!("{what} must be a tuple of ints")),
        }
    }

    fn tuple(&self, id: Id, what: &str) -> Result<Vec<Id>, PickleError> {
        match &self.arena[id] {
            Obj::Tuple(items) => Ok(items.clone()),
            _ => Err(format!("{what} must be a tuple")),
        }
    }

    /// `BINPERSID` of `('storage', StorageType, key, location, numel)`.
    fn persistent_load(&self, pid: Id) -> Result<Obj, PickleError> {
        let items = self.tuple(pid, "persistent id")?;
        let [tag, ty, key, _location, len] = items[..] else {
            return Err(format!(
                "persistent id must have 5 fields, has {}",
                items.len()
            ));
        };
        if self.arena[tag] != Obj::Str("storage".into()) {
            return Err("persistent id is not a 'storage' reference".into());
        }
        let Obj::Global(Global::Storage(dtype)) = self.arena[ty] else {
            return Err("storage reference does not name a torch storage type".into());
        };
        let Obj::Str(key) = &self.arena[key] else {
            return Err("storage key must be a string".into());
        };
        if key.is_empty() || key.contains(['/', '\\']) || key.contains("..") {
            return Err(format!("storage key {key:?} is not a plain name"));
        }
        Ok(Obj::Storage {
            key: key.clone(),
            dtype,
            len: self.usize(len, "storage size")?,
        })
    }

    fn reduce(&self, callable: Id, args: Id) -> Result<Obj, PickleError> {
        let Obj::Global(g) = self.arena[callable] else {
            return Err(format!(
                "REDUCE of a {} is refused: only allow-listed torch globals may be called",
                kind_name(&self.arena[callable])
            ));
        };
        let args = self.tuple(args, "REDUCE arguments")?;
        match g {
            Global::OrderedDict => {
                if !args.is_empty() {
                    return Err("OrderedDict(...) with arguments is not supported".into());
                }
                Ok(Obj::Dict(Vec::new()))
            }
            Global::RebuildParameter => {
                // (data, requires_grad, backward_hooks)
                let data = *args.first().ok_or("_rebuild_parameter without arguments")?;
                match &self.arena[data] {
                    Obj::Tensor(t) => Ok(Obj::Tensor(t.clone())),
                    _ => Err("_rebuild_parameter of something other than a tensor".into()),
                }
            }
            Global::RebuildTensor => self.rebuild_tensor(&args),
            Global::Storage(_) => Err("calling a storage type is not supported".into()),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    fn rebuild_tensor(&self, args: &[Id]) -> Result<Obj, PickleError> {
        if args.len() < 4 {
            return Err(format!(
                "_rebuild_tensor_v2 needs at least 4 arguments, got {}",
                args.len()
            ));
        }
        let Obj::Storage { key, dtype, len } = &self.arena[args[0]] else {
            return Err("_rebuild_tensor_v2: first argument is not a storage".into());
        };
        let t = TensorRef {
            storage: key.clone(),
            dtype: *dtype,
            storage_len: *len,
            offset: self.usize(args[1], "tensor offset")?,
            shape: self.usizes(args[2], "tensor size")?,
            stride: self.usizes(args[3], "tensor stride")?,
        };
        if t.shape.len() != t.stride.len() {
            return Err(format!(
                "tensor size {:?} and stride {:?} differ in rank",
                t.shape, t.stride
            ));
        }
        check_view(&t)?;
        Ok(Obj::Tensor(t))
    }
}

/// Checks that every element of the view lies inside the storage (overflow-safe).
pub fn check_view(t: &TensorRef) -> Result<(), PickleError> {
    let mut numel: usize = 1;
    let mut last = t.offset;
    for (&n, &s) in t.shape.iter().zip(&t.stride) {
        numel = numel.checked_mul(n).ok_or("tensor size overflows")?;
        if n > 0 {
            last = (n - 1)
                .checked_mul(s)
                .and_then(|x| x.checked_add(last))
                .ok_or("tensor view overflows")?;
        }
    }
    if numel > 0 && last >= t.storage_len {
        return Err(format!(
            "tensor view (offset {}, size {:?}, stride {:?}) reaches element {last} of a storage \
             of {} elements",
            t.offset, t.shape, t.stride, t.storage_len
        ));
    }
    Ok(())
}

fn allowed_global(module: &str, name: &str) -> Result<Global, PickleError> {
    let storage = |d| Ok(Global::Storage(d));
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Ok(Global::RebuildParameter),
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch", "FloatStorage") => storage(DType::F32),
        ("torch", "DoubleStorage") => storage(DType::F64),
        ("torch", "HalfStorage") => storage(DType::F16),
        ("torch", "BFloat16Storage") => storage(DType::BF16),
        ("torch", "ByteStorage") => storage(DType::U8),
        ("torch", "ShortStorage") => storage(DType::I16),
        ("torch", "IntStorage") => storage(DType::I32),
        ("torch", "LongStorage") => storage(DType::I64),
        _ => Err(format!(
            "refusing global {module}.{name}: a checkpoint may only reference torch tensor \
             rebuild functions, torch storage types and collections.OrderedDict"
        )),
    }
}

fn long_from_bytes(bytes: &[u8]) -> Result<i64, PickleError> {
    if bytes.len() > 8 {
        return Err(format!(
            "LONG1 of {} bytes does not fit in 64 bits",
            bytes.len()
        ));
    }
    let mut buf = [0u8; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    if negative {
        buf[bytes.len()..].fill(0xff);
    }
    Ok(i64::from_le_bytes(buf))
}

fn utf8(bytes: &[u8]) -> Result<String, PickleError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "string is not valid UTF-8".into())
}

fn kind_name(obj: &Obj) -> &'static str {
    match obj {
        Obj::Global(_) => "class",
        Obj::Tensor(_) => "tensor",
        Obj::Storage { .. } => "storage",
        Obj::Str(_) => "str",
        _ => "non-callable object",
    }
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        b'P' => "PERSID",
        0x82..=0x84 => "EXT",
        b'S' | b'T' | b'U' => "STRING",
        b'V' => "UNICODE",
        b'I' | b'L' | b'F' => "text number",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pickle of `{'w': _rebuild_tensor_v2(storage('0', FloatStorage, 6), 0, (2, 3), (3, 1))}`.
    fn tensor_dict() -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
        p.extend([b'X', 1, 0, 0, 0, b'w']);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ");
        p.extend(b"K\x00K\x02K\x03\x86K\x03K\x01\x86\x89ccollections\nOrderedDict\n)Rt");
        p.extend(b"Ru.");
        p
    }

    #[test]
    fn parses_a_tensor_dict() {
        let p = parse(&tensor_dict()).unwrap();
        let t = p.root().get("w").unwrap().as_tensor().unwrap().clone();
        assert_eq!(t.shape, [2, 3]);
        assert_eq!(t.stride, [3, 1]);
        assert_eq!(t.storage, "0");
        assert_eq!(t.dtype, DType::F32);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let full = tensor_dict();
        for n in 0..full.len() {
            assert!(parse(&full[..n]).is_err(), "prefix of {n} bytes parsed");
        }
    }

    #[test]
    fn refuses_code_execution() {
        // cos\nsystem\n(S'echo pwned'\ntR.  -- classic os.system payload
        let e = parse(b"cos\nsystem\n(S'echo pwned'\ntR.").unwrap_err();
        assert!(e.contains("os.system"), "{e}");
        // builtins.eval via GLOBAL + REDUCE with protocol 2 framing
        let e = parse(b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.").unwrap_err();
        assert!(e.contains("builtins.eval"), "{e}");
        // REDUCE of a non-callable
        assert!(parse(b"\x80\x02X\x01\x00\x00\x00a)R.").is_err());
        // STACK_GLOBAL and INST are not accepted
        assert!(parse(b"\x80\x04\x8c\x02os\x8c\x06system\x93.").is_err());
        assert!(parse(b"(ios\nsystem\n.").is_err());
    }

    #[test]
    fn rejects_views_outside_their_storage() {
        let mut bad = tensor_dict();
        let at = bad.windows(5).position(|w| w == b"K\x03K\x01\x86").unwrap();
        bad[at + 1] = 4; // stride (4, 1) for a 2x3 view of 6 elements
        let e = parse(&bad).unwrap_err();
        assert!(e.contains("reaches element"), "{e}");
    }

    #[test]
    fn huge_lengths_do_not_allocate() {
        assert!(parse(b"\x80\x02X\xff\xff\xff\xffabc").is_err());
        assert!(parse(b"\x80\x02\x8a\xffabc").is_err());
        assert!(parse(b"\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.").is_err());
    }

    #[test]
    fn memo_reuse_copies_nothing() {
        // l = []; then 10_000 times: BINGET 0, APPEND onto itself -> a cycle; still linear.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..10_000 {
            p.extend([b'h', 0, b'a']);
        }
        p.push(b'.');
        let parsed = parse(&p).unwrap();
        assert_eq!(parsed.arena.len(), 1);
    }

    #[test]
    fn long1_sign_extension() {
        assert_eq!(long_from_bytes(&[0xff]).unwrap(), -1);
        assert_eq!(long_from_bytes(&[0x00, 0x01]).unwrap(), 256);
        assert_eq!(long_from_bytes(&[]).unwrap(), 0);
    }
}
