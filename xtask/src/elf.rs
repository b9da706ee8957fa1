//! Reading a device ELF (ARMv7E-M, Thumb-2) for the size and symbol
//! checks: Berkeley section sizes (as `size` prints them), the function
//! symbols (demangled), and the direct call graph, by decoding the Thumb
//! `BL` and `B.W` instructions of every function.
//!
//! The call graph misses calls through function pointers (a formatting
//! trait object, a panic message's argument table): a symbol that nothing
//! calls directly is reported as "referenced by address".

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind, SymbolKind};

use crate::firmware::Sizes;

/// `SHF_WRITE` and `SHF_ALLOC` of an ELF section header.
const SHF_WRITE: u64 = 0x1;
const SHF_ALLOC: u64 = 0x2;

/// A function of the ELF.
#[derive(Debug, Clone)]
pub struct Function {
    /// Demangled name, without the hash suffix.
    pub name: String,
    /// Address (the Thumb bit cleared) and size in bytes.
    pub addr: u64,
    pub size: u64,
}

/// What the checks read from one ELF.
#[derive(Debug)]
pub struct Elf {
    pub sizes: Sizes,
    /// By address.
    pub functions: BTreeMap<u64, Function>,
    /// Callee address → addresses of the functions that call it directly.
    pub callers: BTreeMap<u64, BTreeSet<u64>>,
}

impl Elf {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Elf> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let file =
            object::File::parse(&*data).with_context(|| format!("parsing {}", path.display()))?;
        let mut sizes = Sizes {
            text: 0,
            data: 0,
            bss: 0,
        };
        for s in file.sections() {
            let SectionFlags::Elf { sh_flags } = s.flags() else {
                continue;
            };
            if sh_flags & SHF_ALLOC == 0 {
                continue;
            }
            match s.kind() {
                SectionKind::UninitializedData | SectionKind::UninitializedTls => {
                    sizes.bss += s.size()
                }
                _ if sh_flags & SHF_WRITE != 0 => sizes.data += s.size(),
                _ => sizes.text += s.size(),
            }
        }
        let mut functions = BTreeMap::new();
        for sym in file.symbols() {
            if sym.kind() != SymbolKind::Text || sym.size() == 0 {
                continue;
            }
            let Ok(raw) = sym.name() else { continue };
            let addr = sym.address() & !1;
            functions.entry(addr).or_insert_with(|| Function {
                name: format!("{:#}", rustc_demangle::demangle(raw)),
                addr,
                size: sym.size(),
            });
        }
        let mut callers: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for s in file.sections() {
            if s.kind() != SectionKind::Text {
                continue;
            }
            let (base, bytes) = (s.address(), s.data().unwrap_or(&[]));
            for f in functions.values() {
                if f.addr < base || f.addr + f.size > base + bytes.len() as u64 {
                    continue;
                }
                let code = &bytes[(f.addr - base) as usize..(f.addr - base + f.size) as usize];
                for target in branch_targets(code, f.addr) {
                    if target != f.addr {
                        callers.entry(target).or_default().insert(f.addr);
                    }
                }
            }
        }
        Ok(Elf {
            sizes,
            functions,
            callers,
        })
    }

    /// The names of the functions calling `addr` directly.
    pub fn callers_of(&self, addr: u64) -> Vec<&Function> {
        self.callers
            .get(&addr)
            .into_iter()
            .flatten()
            .filter_map(|a| self.functions.get(a))
            .collect()
    }
}

/// The targets of the `BL` and `B.W` (encoding T4) instructions in `code`,
/// a function at `addr`, decoded from its first instruction on (a 32-bit
/// Thumb-2 instruction starts with `0b11101`, `0b11110` or `0b11111`).
pub fn branch_targets(code: &[u8], addr: u64) -> Vec<u64> {
    let half = |i: usize| u32::from(u16::from_le_bytes([code[i], code[i + 1]]));
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= code.len() {
        let hw1 = half(i);
        let wide = hw1 >> 11 >= 0b11101;
        if wide && i + 4 <= code.len() {
            let hw2 = half(i + 2);
            // BL: 11110 S imm10 | 11 J1 1 J2 imm11; B.W (T4): 10 J1 1 J2
            // imm11, the same offset encoding.
            let is_call = hw2 & 0xD000 == 0xD000 || hw2 & 0xD000 == 0x9000;
            if hw1 >> 11 == 0b11110 && is_call {
                let s = (hw1 >> 10) & 1;
                let j1 = (hw2 >> 13) & 1;
                let j2 = (hw2 >> 11) & 1;
                let i1 = !(j1 ^ s) & 1;
                let i2 = !(j2 ^ s) & 1;
                let imm = s << 24 | i1 << 23 | i2 << 22 | (hw1 & 0x3FF) << 12 | (hw2 & 0x7FF) << 1;
                // Sign-extend the 25-bit offset.
                let off = ((imm << 7) as i32) >> 7;
                let pc = addr + i as u64 + 4;
                out.push((pc as i64 + i64::from(off)) as u64);
            }
            i += 4;
        } else {
            i += 2;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::branch_targets;

    #[test]
    fn decodes_bl_and_b_w_forward_and_backward() {
        // `bl 0x9c98` at 0x1722: f008 fab9 (from the firmware's disassembly).
        let code = [0x08, 0xf0, 0xb9, 0xfa];
        assert_eq!(branch_targets(&code, 0x1722), [0x9c98]);
        // A 16-bit instruction first, then the same call 2 bytes later.
        let code = [0x00, 0xbf, 0x08, 0xf0, 0xb9, 0xfa];
        assert_eq!(branch_targets(&code, 0x1720), [0x9c98]);
        // `bl` backwards: f7ff fffe calls itself + 0 (pc + 4 − 4).
        let code = [0xff, 0xf7, 0xfe, 0xff];
        assert_eq!(branch_targets(&code, 0x100), [0x100]);
        // `b.w` (T4) forwards by 0x1000: f001 b800.
        let code = [0x01, 0xf0, 0x00, 0xb8];
        assert_eq!(branch_targets(&code, 0x200), [0x1204]);
        // A 32-bit non-branch (`movw r2, #1605`: f240 6245) is skipped whole.
        let code = [0x40, 0xf2, 0x45, 0x62];
        assert!(branch_targets(&code, 0).is_empty());
    }
}
