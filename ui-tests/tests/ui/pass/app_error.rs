//! A method returning `Result<T, E>` with a serde error type: the error is
//! a value, so the client sees `Ok(Err(e))`; transport failures are the
//! outer `RpcError`.
#![deny(warnings)]

use std::future::Future;

use octopii::RpcError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum BankError {
    Insufficient { balance: u64, wanted: u64 },
    NoAccount(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    id: u64,
    balance: u64,
}

#[octopii::service]
trait Bank {
    async fn withdraw(&self, account: String, amount: u64) -> Result<Receipt, BankError>;
    async fn close(&self, account: String) -> Result<(), BankError>;
    async fn audit(&self) -> std::result::Result<Vec<Receipt>, String>;
}

struct Vault;

impl Bank for Vault {
    async fn withdraw(&self, account: String, amount: u64) -> Result<Receipt, BankError> {
        if account.is_empty() {
            return Err(BankError::NoAccount(account));
        }
        Err(BankError::Insufficient {
            balance: 0,
            wanted: amount,
        })
    }

    async fn close(&self, _account: String) -> Result<(), BankError> {
        Ok(())
    }

    async fn audit(&self) -> Result<Vec<Receipt>, String> {
        Ok(vec![Receipt { id: 1, balance: 0 }])
    }
}

fn typed(
    client: &BankClient,
) -> impl Future<Output = Result<Result<Receipt, BankError>, RpcError>> + '_ {
    client.withdraw("alice".into(), 10)
}

fn main() {
    let _ = typed;
    let _server = BankServer::new(Vault);
}
