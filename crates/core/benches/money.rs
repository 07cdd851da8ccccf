//! Yuan ↔ fen conversion at the wire edge: every Alipay amount is parsed from, and written
//! as, a decimal yuan string, so these run several times per order and per notify.

use std::hint::black_box;

use criterion::{Criterion, criterion_main};
use paygate_core::Fen;

fn money(c: &mut Criterion) {
    let amounts: Vec<Fen> = [1, 1999, 100_000, 12_345_678, 10_000_000_000]
        .into_iter()
        .map(|f| Fen::new(f).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let texts = [
        "0.01",
        "19.99",
        "1000.00",
        "123456.78",
        "100000000.00",
        "88.8",
    ];
    c.bench_function("fen_to_yuan_string_5_amounts", |b| {
        b.iter(|| {
            for amount in &amounts {
                black_box(black_box(*amount).to_yuan_string());
            }
        })
    });
    c.bench_function("parse_yuan_6_texts", |b| {
        b.iter(|| {
            for text in texts {
                let _ = black_box(Fen::parse_yuan(black_box(text)));
            }
        })
    });
}

mod harness {
    // criterion's macro generates an undocumented function.
    #![allow(missing_docs)]
    use super::money;
    criterion::criterion_group!(benches, money);
}
criterion_main!(harness::benches);
