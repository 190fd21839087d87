//! Losses of docs/mqe.md sections 4 (critic), 5 (DDPG+BC actor) and 7 (GCBC), on latents.
//!
//! These functions take already-computed latents so they can be checked against plain loops;
//! [`crate::Agent`] wires the networks to them.

use candle_core::{D, DType, Tensor};

use crate::error::Result;
use crate::ops::{mrn_matched, mrn_pairwise};

/// Above this `delta = dist - distW` the critic loss is linear (guards `exp` against overflow).
pub const BACKUP_EXP_GUARD: f64 = 5.0;
/// Added to the constant denominator of the normalised q loss.
pub const Q_NORM_EPS: f64 = 1e-6;

/// Critic loss and the quantities its health metrics need.
pub struct CriticLoss {
    /// loss_backup + loss_inv (differentiable).
    pub loss: Tensor,
    /// Multistep LINEX backup term (scalar).
    pub loss_backup: Tensor,
    /// Action-invariance term (scalar).
    pub loss_inv: Tensor,
    /// `dist[e, i, j] = d(phi_e(s_i, a_i), psi_e(g_j))`, `[E, B, B]`.
    pub dist: Tensor,
}

/// Critic loss of section 4.
///
/// `phi_sa`, `psi_s`, `psi_w`, `psi_g`: `[E, B, D]` latents of (s, a), s, the waypoint and the
/// value goal; `waypoint_offset`: k as f32 `[B]`. `psi_w` and the `psi_g` inside distW are
/// detached here, whatever the caller passes.
pub fn critic_loss(
    phi_sa: &Tensor,
    psi_s: &Tensor,
    psi_w: &Tensor,
    psi_g: &Tensor,
    waypoint_offset: &Tensor,
    gamma: f64,
    components: usize,
) -> Result<CriticLoss> {
    let (e, b, _) = phi_sa.dims3()?;
    let dist = mrn_pairwise(phi_sa, psi_g, components)?;
    let dist_w = mrn_pairwise(&psi_w.detach(), &psi_g.detach(), components)?;
    let delta = (&dist - dist_w)?;
    // gamma^k_i broadcast over e and j.
    let discount = (waypoint_offset.to_dtype(DType::F32)? * gamma.ln())?
        .exp()?
        .reshape((1, b, 1))?;
    let exp_branch = (discount.broadcast_mul(&delta.minimum(BACKUP_EXP_GUARD)?.exp()?)? - &dist)?;
    let linear = delta.gt(BACKUP_EXP_GUARD)?;
    let per_pair = linear.where_cond(&delta, &exp_branch)?;
    let eye = Tensor::eye(b, DType::F32, phi_sa.device())?;
    let all_pairs = per_pair.mean_all()?;
    let matching = (per_pair.broadcast_mul(&eye)?.sum_all()? / (e * b) as f64)?;
    let loss_backup = ((all_pairs * 0.5)? + (matching * 0.5)?)?;
    let inv_dist = mrn_matched(psi_s, phi_sa, components)?;
    let loss_inv = ((inv_dist.neg()?.exp()? - 1.0)?.sqr()?).mean_all()?;
    let loss = (&loss_backup + &loss_inv)?;
    Ok(CriticLoss {
        loss,
        loss_backup,
        loss_inv,
        dist,
    })
}

/// clip(mu, -1, 1) whose gradient is 1 inside the box and exactly 0 outside.
pub fn clip_action(mu: &Tensor) -> Result<Tensor> {
    let inside = mu.ge(-1.0)?.mul(&mu.le(1.0)?)?.to_dtype(mu.dtype())?;
    let clipped = mu.clamp(-1.0, 1.0)?.detach();
    // (mu - mu.detach()) is exactly 0 in value and carries d/dmu = 1, masked to the box.
    Ok((clipped + (mu - mu.detach())?.mul(&inside)?)?)
}

/// Actor loss of section 5 and its parts.
pub struct ActorLoss {
    /// q_loss + bc_loss (differentiable).
    pub loss: Tensor,
    /// -mean(q) / (mean|q| + 1e-6), denominator constant.
    pub q_loss: Tensor,
    /// alpha * mean(0.5 ||a - mu||^2).
    pub bc_loss: Tensor,
    /// mean |q| (no gradient).
    pub q_abs_mean: Tensor,
}

/// DDPG+BC: `q_e` `[E, B]` (= -d(phi_e(s, clip(mu)), psi_e(g)) through a frozen critic),
/// `mu` and `action` `[B, A]`.
pub fn actor_loss(q_e: &Tensor, mu: &Tensor, action: &Tensor, bc_alpha: f64) -> Result<ActorLoss> {
    let q = q_e.min(0)?;
    let q_abs_mean = q.abs()?.mean_all()?.detach();
    let q_loss = q
        .mean_all()?
        .neg()?
        .broadcast_div(&(&q_abs_mean + Q_NORM_EPS)?)?;
    let bc_loss = (bc_term(mu, action)? * bc_alpha)?;
    Ok(ActorLoss {
        loss: (&q_loss + &bc_loss)?,
        q_loss,
        bc_loss,
        q_abs_mean,
    })
}

/// mean over the batch of 0.5 ||a - mu||^2 (the GCBC loss; alpha-free).
pub fn bc_term(mu: &Tensor, action: &Tensor) -> Result<Tensor> {
    let sq = (action - mu)?.sqr()?.sum(D::Minus1)?;
    Ok((sq.mean_all()? * 0.5)?)
}

/// GCBC loss of section 7.
pub fn gcbc_loss(mu: &Tensor, action: &Tensor) -> Result<Tensor> {
    bc_term(mu, action)
}

/// Fraction of (e, i) with argmin_j dist[e, i, j] == i, `dist` `[E, B, B]`.
pub fn pair_accuracy(dist: &Tensor) -> Result<f32> {
    let (e, b, _) = dist.dims3()?;
    let argmin = dist
        .argmin(D::Minus1)?
        .to_dtype(DType::U32)?
        .to_vec2::<u32>()?;
    let hits = argmin
        .iter()
        .flat_map(|row| row.iter().enumerate())
        .filter(|(i, j)| *i as u32 == **j)
        .count();
    Ok(hits as f32 / (e * b) as f32)
}

/// Mean of `dist[e, i, i]`.
pub fn mean_matching_dist(dist: &Tensor) -> Result<f32> {
    let (e, b, _) = dist.dims3()?;
    let eye = Tensor::eye(b, DType::F32, dist.device())?;
    Ok((dist.broadcast_mul(&eye)?.sum_all()? / (e * b) as f64)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?)
}
