//! A Parquet file's structure, checked before polars reads it.
//!
//! polars-parquet 0.55 trusts counts inside a file when it sizes allocations: a thrift list
//! header in the footer (`Vec::with_capacity` of up to 2^31 elements), and a page header's
//! `num_values` (an `i32` cast with `as usize`, so -5 becomes 2^64 - 5). A failed allocation
//! aborts the process, and no `catch_unwind` can turn that into an error, so the counts are
//! checked here first: every list in the footer against the bytes left to hold it, nesting depth,
//! row counts against the file's size, page sizes against a bound. `cargo xtask fuzz parquet`
//! found both aborts; with this check it finds none (docs/RELIABILITY.md).

use polars_parquet::parquet::page::{CompressedPage, DataPageHeader};
use polars_parquet::parquet::read::{get_page_iterator, read_metadata};

/// Most rows a file may claim per byte of its size. A valid FER2013 row carries an encoded
/// image (at least ~100 bytes); even an all-null column stores a row in a few bits.
const MAX_ROWS_PER_BYTE: u64 = 64;
/// Largest page fer decompresses (the Hub's pages are ~1 MB).
const MAX_PAGE_BYTES: usize = 256 << 20;
/// Deepest nesting of thrift structs and lists accepted in the footer (Parquet's own metadata
/// nests about 6 deep; the bound keeps a hostile footer from exhausting the stack).
const MAX_DEPTH: usize = 32;

/// Checks the footer's thrift encoding, then every row group, column chunk and page header.
/// Takes the file as polars' own buffer, which the page reader shares without copying.
pub(crate) fn check(file: &polars_buffer::Buffer<u8>) -> Result<(), String> {
    let footer = footer(file)?;
    let mut walker = Compact { data: footer, pos: 0 };
    walker.structure(0)?;
    check_pages(file)
}

fn footer(bytes: &[u8]) -> Result<&[u8], String> {
    let n = bytes.len();
    if n < 12 || &bytes[..4] != b"PAR1" || &bytes[n - 4..] != b"PAR1" {
        return Err("not a Parquet file (no PAR1 magic at both ends)".into());
    }
    let len = u32::from_le_bytes([bytes[n - 8], bytes[n - 7], bytes[n - 6], bytes[n - 5]]) as usize;
    if len > n - 12 {
        return Err(format!("the footer claims {len} bytes in a file of {n}"));
    }
    Ok(&bytes[n - 8 - len..n - 8])
}

/// A walk over thrift's compact protocol that allocates nothing and checks every size.
struct Compact<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Compact<'_> {
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.data.get(self.pos).ok_or("the footer ends inside a value")?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.left() {
            return Err(format!("the footer claims {n} bytes where {} are left", self.left()));
        }
        self.pos += n;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err("a varint in the footer overflows 64 bits".into());
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint in the footer is longer than 10 bytes".into())
    }

    fn structure(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("the footer nests deeper than {MAX_DEPTH} levels"));
        }
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            if header >> 4 == 0 {
                self.varint()?; // a field id too far from the previous one for the short form
            }
            self.value(header & 0x0f, depth)?;
        }
    }

    /// A list or set: the size must fit in the bytes left, one byte per element at least.
    fn list(&mut self, depth: usize) -> Result<(), String> {
        let header = self.byte()?;
        let size = if header >> 4 == 15 { self.varint()? } else { u64::from(header >> 4) };
        if size > self.left() as u64 {
            return Err(format!("a list in the footer claims {size} elements where {} bytes are left", self.left()));
        }
        let kind = header & 0x0f;
        for _ in 0..size {
            // Booleans in a list are a byte each, unlike booleans in a struct's field header.
            if kind == 1 || kind == 2 { self.skip(1)? } else { self.value(kind, depth + 1)? }
        }
        Ok(())
    }

    fn value(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        match kind {
            1 | 2 => Ok(()),
            3 => self.skip(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            8 => {
                let len = self.varint()?;
                self.skip(usize::try_from(len).map_err(|_| format!("a string in the footer claims {len} bytes"))?)
            }
            9 | 10 => self.list(depth),
            11 => {
                let size = self.varint()?;
                if size == 0 {
                    return Ok(());
                }
                if size > self.left() as u64 {
                    return Err(format!(
                        "a map in the footer claims {size} entries where {} bytes are left",
                        self.left()
                    ));
                }
                let kinds = self.byte()?;
                for _ in 0..size {
                    self.value(kinds >> 4, depth + 1)?;
                    self.value(kinds & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.structure(depth + 1),
            other => Err(format!("unknown thrift type {other} in the footer")),
        }
    }
}

fn check_pages(buffer: &polars_buffer::Buffer<u8>) -> Result<(), String> {
    let bytes: &[u8] = buffer;
    let metadata = read_metadata(&mut std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let max_rows = (bytes.len() as u64).saturating_mul(MAX_ROWS_PER_BYTE).saturating_add(1024);
    for (g, group) in metadata.row_groups.iter().enumerate() {
        let rows = group.num_rows() as u64;
        if rows > max_rows {
            return Err(format!("row group {g} claims {rows} rows in a file of {} bytes", bytes.len()));
        }
        for chunk in group.parquet_columns() {
            let column = chunk.descriptor().path_in_schema.join(".");
            let flat = chunk.descriptor().descriptor.max_rep_level == 0;
            let chunk_values = chunk.num_values();
            if chunk_values < 0 || (flat && chunk_values as u64 > rows) || chunk_values as u64 > max_rows {
                return Err(format!("column {column:?} in row group {g} claims {chunk_values} values for {rows} rows"));
            }
            let pages = get_page_iterator(chunk, std::io::Cursor::new(buffer.clone()), Vec::new(), MAX_PAGE_BYTES)
                .map_err(|e| e.to_string())?;
            for page in pages {
                let page = page.map_err(|e| format!("column {column:?}: {e}"))?;
                let CompressedPage::Data(page) = page else { continue };
                let bad =
                    |what: &str, v: i64| format!("column {column:?} in row group {g}: a page header says {what} = {v}");
                if page.uncompressed_size() > MAX_PAGE_BYTES {
                    return Err(bad("uncompressed_page_size", page.uncompressed_size() as i64));
                }
                let (values, limits) = match page.header() {
                    DataPageHeader::V1(h) => (h.num_values, vec![]),
                    DataPageHeader::V2(h) => (
                        h.num_values,
                        vec![
                            ("num_nulls", h.num_nulls, i64::from(h.num_values)),
                            ("num_rows", h.num_rows, rows as i64),
                            (
                                "definition_levels_byte_length",
                                h.definition_levels_byte_length,
                                page.compressed_size() as i64,
                            ),
                            (
                                "repetition_levels_byte_length",
                                h.repetition_levels_byte_length,
                                page.compressed_size() as i64,
                            ),
                        ],
                    ),
                };
                let most = if flat { rows as i64 } else { chunk_values };
                if values < 0 || i64::from(values) > most {
                    return Err(bad("num_values", i64::from(values)));
                }
                for (what, v, limit) in limits {
                    if v < 0 || i64::from(v) > limit {
                        return Err(bad(what, i64::from(v)));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_footer(footer: &[u8]) -> polars_buffer::Buffer<u8> {
        let mut f = b"PAR1".to_vec();
        f.extend_from_slice(footer);
        f.extend_from_slice(&(footer.len() as u32).to_le_bytes());
        f.extend_from_slice(b"PAR1");
        f.into()
    }

    #[test]
    fn a_list_longer_than_the_footer_is_refused_before_anything_allocates() {
        // Field 2 (schema) of FileMetaData, a list of structs (0x19) claiming 2^31 - 1 elements.
        let footer = [0x19, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00];
        let err = check(&file_with_footer(&footer)).err().unwrap_or_default();
        assert!(err.contains("claims 2147483647 elements"), "{err}");
    }

    #[test]
    fn deep_nesting_strings_and_varints_are_bounded() {
        let deep: Vec<u8> = std::iter::repeat_n(0x1c, 100).collect(); // struct in struct in ...
        assert!(check(&file_with_footer(&deep)).err().unwrap_or_default().contains("nests deeper"));
        let long_string = [0x18, 0xff, 0xff, 0x03, b'a'];
        assert!(check(&file_with_footer(&long_string)).err().unwrap_or_default().contains("claims 65535 bytes"));
        let endless = [0x15, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(check(&file_with_footer(&endless)).is_err());
        assert!(check(&b"PAR1".to_vec().into()).err().unwrap_or_default().contains("not a Parquet file"));
        assert!(
            check(&[b"PAR1".as_slice(), &[0; 8], &u32::MAX.to_le_bytes(), b"PAR1"].concat().into())
                .err()
                .unwrap_or_default()
                .contains("footer claims")
        );
    }
}
