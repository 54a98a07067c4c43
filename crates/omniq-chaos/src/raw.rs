//! Direct access to a backend's records, around the `Storage` trait: deleting a
//! namespace, and writing bytes that do not decode.

use anyhow::Result;
use omniq::redis::fred::prelude::*;

/// Deletes every key of `namespace` on the Redis server at `url`.
pub async fn redis_delete_namespace(url: &str, namespace: &str) -> Result<usize> {
    let client = redis_client(url).await?;
    let mut n = 0;
    for pattern in [
        format!("omniq:{{{namespace}:*"),
        format!("omniq:{{{namespace}}}:*"),
        format!("omniq:{namespace}:*"),
    ] {
        let keys = scan(&client, &pattern).await?;
        for chunk in keys.chunks(500) {
            let dels = chunk.iter().map(|k| client.del::<(), _>(k.clone()));
            futures::future::try_join_all(dels).await?;
        }
        n += keys.len();
    }
    let _ = client.quit().await;
    Ok(n)
}

pub(crate) async fn redis_client(url: &str) -> Result<Client> {
    let config = Config::from_url(url)?;
    let client = Builder::from_config(config).build()?;
    client.init().await?;
    Ok(client)
}

pub(crate) async fn scan(client: &Client, pattern: &str) -> Result<Vec<Key>> {
    use futures::TryStreamExt;
    Ok(client
        .scan_buffered(pattern.to_string(), Some(1000), None)
        .try_collect()
        .await?)
}
