//! Prometheus' HTTP API encoding of a successful query's `data` field.

use photon_tsdb::Labels;
use serde_json::{json, Map, Number, Value as Json};

use crate::value::format_float;
use crate::Value;

/// `{"resultType": ..., "result": ...}` as Prometheus writes it: points as
/// `[unix_seconds, "value"]`, values formatted like Go (`"NaN"`, `"+Inf"`).
pub fn result_json(v: &Value) -> Json {
    match v {
        Value::Scalar(t, x) => json!({"resultType": "scalar", "result": point(*t, *x)}),
        Value::String(t, s) => json!({"resultType": "string", "result": [seconds(*t), s]}),
        Value::Vector(samples) => {
            let result: Vec<Json> = samples
                .iter()
                .map(|s| json!({"metric": metric(&s.labels), "value": point(s.t, s.v)}))
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        Value::Matrix(series) => {
            let result: Vec<Json> = series
                .iter()
                .map(|s| {
                    let values: Vec<Json> = s.samples.iter().map(|p| point(p.t, p.v)).collect();
                    json!({"metric": metric(&s.labels), "values": values})
                })
                .collect();
            json!({"resultType": "matrix", "result": result})
        }
    }
}

fn metric(labels: &Labels) -> Json {
    let mut m = Map::new();
    for (n, v) in labels.iter() {
        m.insert(n.to_string(), Json::String(v.to_string()));
    }
    Json::Object(m)
}

fn point(t: i64, v: f64) -> Json {
    json!([seconds(t), format_float(v)])
}

/// Milliseconds as fractional seconds; whole seconds stay integers, as
/// Prometheus prints `1435781451` rather than `1435781451.0`.
fn seconds(t_ms: i64) -> Json {
    if t_ms % 1000 == 0 {
        Json::Number(Number::from(t_ms / 1000))
    } else {
        Number::from_f64(t_ms as f64 / 1000.0).map_or(Json::Null, Json::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SeriesData, VectorSample};
    use photon_tsdb::Sample;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn vector_and_matrix_look_like_prometheus() {
        let v = Value::Vector(vec![VectorSample {
            labels: labels(&[("__name__", "up"), ("job", "a")]),
            t: 1_435_781_451_781,
            v: f64::INFINITY,
        }]);
        assert_eq!(
            result_json(&v).to_string(),
            r#"{"result":[{"metric":{"__name__":"up","job":"a"},"value":[1435781451.781,"+Inf"]}],"resultType":"vector"}"#
        );
        let m = Value::Matrix(vec![SeriesData {
            labels: Labels::default(),
            samples: vec![
                Sample {
                    t: 1000,
                    v: f64::NAN,
                },
                Sample { t: 2500, v: -2.5 },
            ],
        }]);
        assert_eq!(
            result_json(&m).to_string(),
            r#"{"result":[{"metric":{},"values":[[1,"NaN"],[2.5,"-2.5"]]}],"resultType":"matrix"}"#
        );
        assert_eq!(
            result_json(&Value::Scalar(-1500, 1.0)).to_string(),
            r#"{"result":[-1.5,"1"],"resultType":"scalar"}"#
        );
        assert_eq!(
            result_json(&Value::String(0, "x".into())).to_string(),
            r#"{"result":[0,"x"],"resultType":"string"}"#
        );
    }
}
