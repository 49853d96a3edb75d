//! A report as a list of blocks, rendered to Markdown (REPORT.md) and to a self-contained HTML
//! page (index.html, figures beside it).

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Block {
    Heading(u8, String),
    Paragraph(String),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A figure file relative to the report, with its caption.
    Figure {
        path: String,
        caption: String,
    },
    Code(String),
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Document {
    pub title: String,
    pub blocks: Vec<Block>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `**bold**` and `` `code` `` in paragraph text, as HTML.
fn inline_html(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(s).split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            for (j, piece) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    out.push_str(&format!("<strong>{piece}</strong>"));
                } else {
                    out.push_str(piece);
                }
            }
        }
    }
    out
}

impl Document {
    pub fn new(title: impl Into<String>) -> Self {
        Document { title: title.into(), blocks: Vec::new() }
    }

    pub fn push(&mut self, block: Block) -> &mut Self {
        self.blocks.push(block);
        self
    }

    pub fn to_markdown(&self) -> String {
        let mut md = format!("# {}\n", self.title);
        for block in &self.blocks {
            md.push('\n');
            match block {
                Block::Heading(level, text) => {
                    md.push_str(&format!("{} {text}\n", "#".repeat((*level as usize).clamp(2, 6))))
                }
                Block::Paragraph(text) => md.push_str(&format!("{text}\n")),
                Block::Table { header, rows } => {
                    md.push_str(&format!("| {} |\n", header.join(" | ")));
                    md.push_str(&format!("|{}\n", "---|".repeat(header.len())));
                    for row in rows {
                        md.push_str(&format!("| {} |\n", row.join(" | ")));
                    }
                }
                Block::Figure { path, caption } => md.push_str(&format!("![{caption}]({path})\n\n*{caption}*\n")),
                Block::Code(text) => md.push_str(&format!("```text\n{}\n```\n", text.trim_end())),
            }
        }
        md
    }

    pub fn to_html(&self) -> String {
        let mut html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n\
             body {{ font-family: sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; color: #222; }}\n\
             table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}\n\
             th {{ background: #f0f0f0; }} figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; image-rendering: pixelated; }}\n\
             figcaption {{ color: #555; font-style: italic; }} pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}\n\
             code {{ word-break: break-all; }}\n\
             </style>\n</head>\n<body>\n<h1>{}</h1>\n",
            escape(&self.title),
            escape(&self.title)
        );
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => {
                    let l = (*level).clamp(2, 6);
                    html.push_str(&format!("<h{l}>{}</h{l}>\n", escape(text)));
                }
                Block::Paragraph(text) => html.push_str(&format!("<p>{}</p>\n", inline_html(text))),
                Block::Table { header, rows } => {
                    html.push_str("<table>\n<tr>");
                    for h in header {
                        html.push_str(&format!("<th>{}</th>", inline_html(h)));
                    }
                    html.push_str("</tr>\n");
                    for row in rows {
                        html.push_str("<tr>");
                        for cell in row {
                            html.push_str(&format!("<td>{}</td>", inline_html(cell)));
                        }
                        html.push_str("</tr>\n");
                    }
                    html.push_str("</table>\n");
                }
                Block::Figure { path, caption } => html.push_str(&format!(
                    "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
                    escape(path),
                    escape(caption),
                    escape(caption)
                )),
                Block::Code(text) => html.push_str(&format!("<pre>{}</pre>\n", escape(text.trim_end()))),
            }
        }
        html.push_str("</body>\n</html>\n");
        html
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_html_render_every_block() {
        let mut d = Document::new("T <1>");
        d.push(Block::Heading(2, "Q1".into()))
            .push(Block::Paragraph("acc **0.67** with `fer`".into()))
            .push(Block::Table { header: vec!["a".into(), "b".into()], rows: vec![vec!["1".into(), "2".into()]] })
            .push(Block::Figure { path: "f.png".into(), caption: "cap".into() })
            .push(Block::Code("x < y".into()));
        insta::assert_snapshot!("document_markdown", d.to_markdown());
        let html = d.to_html();
        assert!(
            html.contains("<h1>T &lt;1&gt;</h1>")
                && html.contains("<strong>0.67</strong>")
                && html.contains("<code>fer</code>")
        );
        assert!(html.contains("<img src=\"f.png\"") && html.contains("<pre>x &lt; y</pre>"));
    }
}
