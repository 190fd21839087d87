//! The one percentile helper of the workspace: action normalisation, latency tables and run
//! reports all read their quantiles here, so that "p99" means the same thing everywhere.

/// A number [`quantile`] can rank: f32 (actions) and f64 (latencies).
pub trait Sample: Copy {
    fn to_f64(self) -> f64;
}

impl Sample for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Sample for f64 {
    fn to_f64(self) -> f64 {
        self
    }
}

/// Quantile `q` (clamped to 0..=1) of `values` with linear interpolation between the two nearest
/// ranks, as numpy's default (`np.quantile(v, q)`); NaNs are ignored. `None` when no value is
/// left. Reorders `values` (a selection, not a full sort: O(n)).
pub fn quantile<T: Sample>(values: &mut [T], q: f64) -> Option<f64> {
    let numbers = move_nans_last(values);
    let values = &mut values[..numbers];
    if values.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let below = pos.floor() as usize;
    let frac = pos - pos.floor();
    let by_value = |a: &T, b: &T| a.to_f64().total_cmp(&b.to_f64());
    let (_, &mut low, above) = values.select_nth_unstable_by(below, by_value);
    let low = low.to_f64();
    if frac == 0.0 || above.is_empty() {
        return Some(low);
    }
    let high = above
        .iter()
        .map(|v| v.to_f64())
        .fold(f64::INFINITY, f64::min);
    Some(low + frac * (high - low))
}

/// [`quantile`] of a copy, for callers that keep their samples in order.
pub fn quantile_of<T: Sample>(values: &[T], q: f64) -> Option<f64> {
    quantile(&mut values.to_vec(), q)
}

/// Moves every NaN to the end; returns how many values are not NaN.
fn move_nans_last<T: Sample>(values: &mut [T]) -> usize {
    let mut numbers = 0;
    for i in 0..values.len() {
        if !values[i].to_f64().is_nan() {
            values.swap(numbers, i);
            numbers += 1;
        }
    }
    numbers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear_interpolation() {
        // np.quantile([1..=10], [0.01, 0.5, 0.99]) = [1.09, 5.5, 9.91]
        let mut v: Vec<f32> = (1..=10).rev().map(|i| i as f32).collect();
        assert!((quantile(&mut v, 0.01).unwrap() - 1.09).abs() < 1e-9);
        assert!((quantile(&mut v, 0.5).unwrap() - 5.5).abs() < 1e-9);
        assert!((quantile(&mut v, 0.99).unwrap() - 9.91).abs() < 1e-9);
        assert_eq!(quantile(&mut v, 0.0), Some(1.0));
        assert_eq!(quantile(&mut v, 1.0), Some(10.0));
    }

    #[test]
    fn nans_are_ignored_and_nothing_left_is_none() {
        let mut v = [f64::NAN, 3.0, f64::NAN, 1.0];
        assert_eq!(quantile(&mut v, 1.0), Some(3.0));
        assert_eq!(quantile(&mut v, 0.5), Some(2.0));
        assert_eq!(quantile::<f64>(&mut [], 0.5), None);
        assert_eq!(quantile(&mut [f64::NAN], 0.5), None);
    }

    #[test]
    fn the_copying_form_leaves_the_order() {
        let v = [3.0f64, 1.0, 2.0];
        assert_eq!(quantile_of(&v, 0.5), Some(2.0));
        assert_eq!(v, [3.0, 1.0, 2.0]);
    }
}
